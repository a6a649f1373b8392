"""The SASL server state machine with scramp's client on the other side, no network."""

from __future__ import annotations

import pytest
from scramp import ScramClient

from strom.metadata.image import ScramCredential
from strom.security.sasl import AuthenticationFailed, SaslServer
from strom.security.scram import make_credential

USERS = {("alice", m): make_credential(m, "alice-secret") for m in ("SCRAM-SHA-256", "SCRAM-SHA-512")}
USERS[("a,b=c", "SCRAM-SHA-256")] = make_credential("SCRAM-SHA-256", "odd")


def lookup(user: str, mechanism: str) -> ScramCredential | None:
    return USERS.get((user, mechanism))


def scram_exchange(mechanism: str, user: str, password: str) -> str | None:
    server = SaslServer(mechanism, lookup)
    client = ScramClient([mechanism], user, password)
    first = server.step(client.get_client_first().encode())
    assert first.user is None
    client.set_server_first(first.challenge.decode())
    final = server.step(client.get_client_final().encode())
    client.set_server_final(final.challenge.decode())  # the client checks the server's signature too
    return final.user


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_scram_succeeds_with_the_right_password(mechanism):
    assert scram_exchange(mechanism, "alice", "alice-secret") == "alice"


def test_scram_user_names_are_unescaped():
    assert scram_exchange("SCRAM-SHA-256", "a=2Cb=3Dc", "odd") == "a,b=c"


@pytest.mark.parametrize(("user", "password"), [("alice", "wrong"), ("nobody", "alice-secret")])
def test_scram_fails_alike_for_a_wrong_password_and_an_unknown_user(user, password):
    with pytest.raises(AuthenticationFailed, match="invalid credentials with SASL mechanism SCRAM-SHA-256") as info:
        scram_exchange("SCRAM-SHA-256", user, password)
    assert user not in str(info.value)


def test_scram_refuses_a_step_after_the_end_and_garbage():
    server = SaslServer("SCRAM-SHA-256", lookup)
    with pytest.raises(AuthenticationFailed):
        server.step(b"\xff\xfe not scram")


@pytest.mark.parametrize(("token", "ok"), [
    (b"\0alice\0alice-secret", True),
    (b"alice\0alice\0alice-secret", True),
    (b"\0alice\0wrong", False),
    (b"\0nobody\0alice-secret", False),
    (b"bob\0alice\0alice-secret", False),  # authorization id of someone else
    (b"alice-secret", False),
])
def test_plain_checks_the_scram_users(token, ok):
    server = SaslServer("PLAIN", lookup)
    if ok:
        assert server.step(token).user == "alice"
    else:
        with pytest.raises(AuthenticationFailed):
            server.step(token)


def test_scram_accepts_the_client_nonce_sent_twice_as_kafka_does():
    """librdkafka < 2.2 (Debian 12's kcat) sends r=<client nonce><client+server nonce>;
    Kafka only checks the suffix, and the proof covers the message as sent."""
    import base64
    import hashlib
    import hmac

    server = SaslServer("SCRAM-SHA-256", lookup)
    cnonce = "fyko+d2lbbFgONRv9qkxdawL"
    first = server.step(f"n,,n=alice,r={cnonce}".encode()).challenge.decode()
    attrs = dict(part.split("=", 1) for part in first.split(","))

    def final(nonce: str) -> bytes:
        without_proof = f"c=biws,r={nonce}"
        salted = hashlib.pbkdf2_hmac("sha256", b"alice-secret", base64.b64decode(attrs["s"]), int(attrs["i"]))
        client_key = hmac.digest(salted, b"Client Key", "sha256")
        auth = f"n=alice,r={cnonce},{first},{without_proof}".encode()
        signature = hmac.digest(hashlib.sha256(client_key).digest(), auth, "sha256")
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    assert server.step(final(cnonce + attrs["r"])).user == "alice"
    other = SaslServer("SCRAM-SHA-256", lookup)
    other.step(f"n,,n=alice,r={cnonce}".encode())
    with pytest.raises(AuthenticationFailed):
        other.step(final(attrs["r"] + "x"))  # not ending with the server's nonce
