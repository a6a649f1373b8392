"""SaslHandshake and SaslAuthenticate called in-process, answers through the codec.

The session lifetime (KIP-368) once went out as 0: the handler wrote ``session_lifetime_ms``,
the schema's field is ``session_lifetime``, and the encoder dropped the unknown key. The
encoder now refuses such a key (tests/protocol/test_unknown_fields.py); this checks the value.
"""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path
from typing import Any

import pytest

from strom.handlers.context import BrokerContext
from strom.handlers.registry import Request
from strom.protocol.api import ApiKey
from strom.protocol.codec import decode_request, decode_response, encode_request, encode_response
from strom.protocol.errors import ErrorCode
from strom.protocol.framing import RequestHeader
from strom.security.listeners import Listener
from strom.security.scram import make_credential
from strom.security.session import ListenerSecurity, Session

from .harness import handle, make_ctx

USER, PASSWORD = "alice", "alice-secret"


@pytest.fixture
def ctx(tmp_path: Path) -> BrokerContext:
    ctx = make_ctx(tmp_path)
    credential = make_credential("SCRAM-SHA-256", PASSWORD)
    asyncio.run(ctx.metadata.alter_scram_credentials([(USER, credential)], []))
    return ctx


def _call(ctx: BrokerContext, session: Session, key: int, version: int, body: dict[str, Any]) -> Any:
    request = Request(
        RequestHeader(key, version, 7, "test"), decode_request(key, version, encode_request(key, version, body)),
        "127.0.0.1", session,
    )
    return decode_response(key, version, encode_response(key, version, asyncio.run(handle(ctx, request))))


def _session(reauth_ms: int) -> Session:
    listener = Listener("SASL_PLAINTEXT", "SASL_PLAINTEXT", "", 0)
    return Session(ListenerSecurity(listener, ("PLAIN",), reauth_ms=reauth_ms, failed_auth_delay_ms=0))


@pytest.mark.parametrize("version", [0, 1, 2])
def test_the_session_lifetime_is_sent(ctx: BrokerContext, version: int) -> None:
    session = _session(reauth_ms=60_000)
    handshake = _call(ctx, session, ApiKey.SASL_HANDSHAKE, 1, {"mechanism": "PLAIN"})
    assert handshake.error_code == ErrorCode.NONE
    token = f"\0{USER}\0{PASSWORD}".encode()
    answer = _call(ctx, session, ApiKey.SASL_AUTHENTICATE, version, {"auth_bytes": token})
    assert answer.error_code == ErrorCode.NONE and session.authenticated
    if version >= 1:  # the field exists from v1
        assert answer.session_lifetime == datetime.timedelta(milliseconds=60_000)


def test_no_lifetime_without_reauthentication(ctx: BrokerContext) -> None:
    session = _session(reauth_ms=0)
    _call(ctx, session, ApiKey.SASL_HANDSHAKE, 1, {"mechanism": "PLAIN"})
    answer = _call(ctx, session, ApiKey.SASL_AUTHENTICATE, 2, {"auth_bytes": f"\0{USER}\0{PASSWORD}".encode()})
    assert answer.error_code == ErrorCode.NONE
    assert answer.session_lifetime == datetime.timedelta(0)


def test_a_wrong_password_fails(ctx: BrokerContext) -> None:
    session = _session(reauth_ms=60_000)
    _call(ctx, session, ApiKey.SASL_HANDSHAKE, 1, {"mechanism": "PLAIN"})
    answer = _call(ctx, session, ApiKey.SASL_AUTHENTICATE, 2, {"auth_bytes": f"\0{USER}\0wrong".encode()})
    assert answer.error_code == ErrorCode.SASL_AUTHENTICATION_FAILED
    assert answer.session_lifetime == datetime.timedelta(0) and session.failed
