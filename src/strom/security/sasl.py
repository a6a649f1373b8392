"""The server side of one SASL exchange (KIP-43 / KIP-152): PLAIN (RFC 4616) and
SCRAM-SHA-256/512 (RFC 5802, through scramp), over the users of the metadata store.

Pure: ``SaslServer.step(token)`` takes a client token and says what to answer; the caller
(handlers.sasl) carries the tokens in SaslAuthenticate requests and responses."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from strom.metadata.image import ScramCredential
from strom.security.scram import MECHANISMS as SCRAM_MECHANISMS
from strom.security.scram import decode_saslname, password_matches

PLAIN = "PLAIN"
SUPPORTED = (PLAIN, *SCRAM_MECHANISMS)

Credentials = Callable[[str, str], ScramCredential | None]  # (user, mechanism) -> credential


class AuthenticationFailed(Exception):
    """The client's credentials are wrong; the message is safe to send to the client."""


@dataclass(frozen=True, slots=True)
class Step:
    challenge: bytes  # the server's token for the client
    user: str | None = None  # set when the exchange completed: the authenticated user


def failure_message(mechanism: str) -> str:
    # Kafka's text, which names no user: a wrong password and an unknown user look alike.
    return f"Authentication failed during authentication due to invalid credentials with SASL mechanism {mechanism}"


class SaslServer:
    def __init__(self, mechanism: str, credentials: Credentials) -> None:
        if mechanism not in SUPPORTED:
            raise ValueError(f"unsupported SASL mechanism {mechanism}")
        self.mechanism = mechanism
        self._credentials = credentials
        self._scram: Any = None  # scramp's ScramServer (scramp has no type hints)
        self._user: str | None = None

    def step(self, token: bytes) -> Step:
        """Raise AuthenticationFailed for wrong credentials or a malformed token."""
        from scramp import ScramException  # only on SASL listeners: kept off the start-up path

        try:
            return self._plain(token) if self.mechanism == PLAIN else self._scram_step(token)
        except (ScramException, UnicodeDecodeError, ValueError) as exc:
            raise AuthenticationFailed(failure_message(self.mechanism)) from exc

    def _plain(self, token: bytes) -> Step:
        parts = token.decode("utf-8").split("\0")
        if len(parts) != 3:
            raise ValueError("a PLAIN token is authzid NUL user NUL password")
        authzid, user, password = parts
        if authzid and authzid != user:
            raise AuthenticationFailed("Authentication failed: Client requested an authorization id that is different from username")
        for mechanism in SCRAM_MECHANISMS:
            credential = self._credentials(user, mechanism)
            if credential is not None:
                if not password_matches(credential, password):
                    break
                return Step(b"", user)
        raise ValueError("no such user or a wrong password")

    def _scram_step(self, token: bytes) -> Step:
        from scramp import ScramException, ScramMechanism

        message = token.decode("utf-8")
        if self._scram is None:
            def auth_info(name: str) -> tuple[bytes, bytes, bytes, int]:
                self._user = decode_saslname(name)
                credential = self._credentials(self._user, self.mechanism)
                if credential is None:
                    raise ScramException("unknown user")
                return credential.salt, credential.stored_key, credential.server_key, credential.iterations

            self._scram = ScramMechanism(self.mechanism).make_server(auth_info)
            self._scram.set_client_first(message)
            return Step(self._scram.get_server_first().encode())
        # Kafka's ScramSaslServer only checks that the client's nonce ends with the server's;
        # librdkafka before 2.2 (Debian 12's kcat) sends the client nonce twice, which Kafka
        # therefore accepts. Do the same: the proof still covers the nonce as sent.
        sent, expected = next((p[2:] for p in message.split(",") if p.startswith("r=")), ""), str(self._scram.nonce)
        if sent != expected and sent.endswith(expected):
            self._scram.nonce = type(self._scram.nonce)(sent)  # scramp's Nonce
        self._scram.set_client_final(message)
        return Step(self._scram.get_server_final().encode(), self._user)
