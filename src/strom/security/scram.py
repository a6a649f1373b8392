"""SCRAM credentials (RFC 5802 / 7677): making them from a password or from what
AlterUserScramCredentials sends, and checking a PLAIN password against them (PLAIN and
SCRAM share one set of users). The exchange itself is scramp's (security.sasl)."""

from __future__ import annotations

import hashlib
import hmac
import os

from strom.metadata.image import ScramCredential

HASHES = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
MECHANISMS = tuple(HASHES)
# AlterUserScramCredentials' mechanism codes (Kafka's ScramMechanism.type())
MECHANISM_CODES = {1: "SCRAM-SHA-256", 2: "SCRAM-SHA-512"}
CODE_OF = {name: code for code, name in MECHANISM_CODES.items()}
MIN_ITERATIONS = 4096  # Kafka refuses fewer, and its tools default to this
MAX_ITERATIONS = 16384  # Kafka refuses more


def make_credential(mechanism: str, password: str, iterations: int = MIN_ITERATIONS,
                    salt: bytes | None = None) -> ScramCredential:
    if mechanism not in HASHES:
        raise ValueError(f"unknown SCRAM mechanism {mechanism}: use {' or '.join(MECHANISMS)}")
    if not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
        raise ValueError(f"iterations must be between {MIN_ITERATIONS} and {MAX_ITERATIONS}")
    salt = os.urandom(32) if salt is None else salt
    salted = hashlib.pbkdf2_hmac(HASHES[mechanism], password.encode(), salt, iterations)
    return credential_from_salted_password(mechanism, salt, salted, iterations)


def credential_from_salted_password(mechanism: str, salt: bytes, salted_password: bytes,
                                    iterations: int) -> ScramCredential:
    """The stored keys from SaltedPassword = Hi(password, salt, i), which is what
    AlterUserScramCredentials carries (KIP-554: the password never reaches the broker)."""
    digest = HASHES[mechanism]
    client_key = hmac.digest(salted_password, b"Client Key", digest)
    server_key = hmac.digest(salted_password, b"Server Key", digest)
    return ScramCredential(mechanism, salt, hashlib.new(digest, client_key).digest(), server_key, iterations)


def password_matches(credential: ScramCredential, password: str) -> bool:
    again = make_credential(credential.mechanism, password, credential.iterations, credential.salt)
    return hmac.compare_digest(again.stored_key, credential.stored_key)


def decode_saslname(name: str) -> str:
    """RFC 5802's user name escaping (',' as '=2C', '=' as '=3D')."""
    return name.replace("=2C", ",").replace("=3D", "=")
