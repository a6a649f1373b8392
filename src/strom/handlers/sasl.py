"""SaslHandshake (key 17), versions 0-1, and SaslAuthenticate (key 36), versions 0-2.

The client names a mechanism (SaslHandshake), then sends its tokens in SaslAuthenticate
requests until the exchange completes (KIP-152). A failure is answered after
``connection.failed.authentication.delay.ms`` and the connection is closed (the server reads
``session.failed``). With ``connections.max.reauth.ms`` the session lifetime goes back in
SaslAuthenticate v1+ and the client re-authenticates on the same connection (KIP-368): the
same handshake and exchange, which must name the same principal.

A handshake on a listener without SASL gets ILLEGAL_SASL_STATE (as Kafka answers once
authenticated). SaslHandshake v0's raw-token mode is not served: every client of interest
sends v1 (API-SCOPE.md), and raw tokens would fail to parse and close the connection.
"""

from __future__ import annotations

import asyncio
import logging
import time

from strom.handlers.context import BrokerContext
from strom.handlers.registry import Delayed, Request, handles
from strom.protocol.api import ApiKey
from strom.protocol.errors import ErrorCode
from strom.protocol.responses import SaslAuthenticateResponse, SaslHandshakeResponse
from strom.security.sasl import AuthenticationFailed, SaslServer
from strom.security.session import Session

log = logging.getLogger(__name__)


@handles(ApiKey.SASL_HANDSHAKE, 0, 1)
async def sasl_handshake(ctx: BrokerContext, request: Request) -> SaslHandshakeResponse | Delayed:
    session = request.session
    if session is None or not session.security.listener.sasl:
        return {"error_code": ErrorCode.ILLEGAL_SASL_STATE, "mechanisms": []}
    enabled = list(session.security.mechanisms)
    mechanism = request.body.mechanism
    if session.reauthenticating or session.mechanism is not None or session.failed:
        return _fail(session, request, {"error_code": ErrorCode.ILLEGAL_SASL_STATE, "mechanisms": enabled},
                     "SaslHandshake out of order")
    if mechanism not in enabled:
        return _fail(session, request, {"error_code": ErrorCode.UNSUPPORTED_SASL_MECHANISM, "mechanisms": enabled},
                     f"unsupported SASL mechanism {mechanism!r}")
    if session.authenticated:
        session.reauthenticating = True  # KIP-368: only the exchange may follow
    session.mechanism = mechanism
    session.sasl = SaslServer(mechanism, lambda user, mech: ctx.image.scram_credential(user, mech))
    return {"error_code": ErrorCode.NONE, "mechanisms": enabled}


@handles(ApiKey.SASL_AUTHENTICATE, 0, 2)
async def sasl_authenticate(ctx: BrokerContext, request: Request) -> SaslAuthenticateResponse | Delayed:
    session = request.session
    response: SaslAuthenticateResponse = {"error_code": ErrorCode.NONE, "error_message": None, "auth_bytes": b"",
                                          "session_lifetime": 0}
    if session is None or session.sasl is None:
        response.update({"error_code": ErrorCode.ILLEGAL_SASL_STATE,
                         "error_message": "SaslAuthenticate before a successful SaslHandshake"})
        return response if session is None else _fail(session, request, response, "SaslAuthenticate out of order")
    try:
        step = session.sasl.step(bytes(request.body.auth_bytes))
    except AuthenticationFailed as exc:
        log.debug("SASL %s failed: %r", session.mechanism, exc.__cause__)
        response.update({"error_code": ErrorCode.SASL_AUTHENTICATION_FAILED, "error_message": str(exc)})
        return _fail(session, request, response, f"{session.mechanism}: {exc}")
    response["auth_bytes"] = step.challenge
    if step.user is None:
        return response  # more rounds (SCRAM's client-final comes next)
    principal = f"User:{step.user}"
    if session.reauthenticating and principal != session.principal:
        response.update({"error_code": ErrorCode.SASL_AUTHENTICATION_FAILED,
                         "error_message": f"Cannot change principals during re-authentication from {session.principal}: {principal}"})
        return _fail(session, request, response, "re-authentication as another principal")
    session.principal, session.authenticated, session.reauthenticating = principal, True, False
    session.mechanism = session.sasl = None
    lifetime = session.security.reauth_ms
    if lifetime > 0:
        session.expires_at = time.monotonic() + lifetime / 1000
        if request.version >= 1:
            response["session_lifetime"] = lifetime
    return response


def _fail(session: Session, request: Request, response: SaslHandshakeResponse | SaslAuthenticateResponse,
          reason: str) -> Delayed:
    """Kafka's answer to a failed authentication: logged with the peer, answered late (to
    slow down password guessing), then the connection is closed."""
    log.warning("failed authentication from %s on listener %s: %s", request.client_host or "?",
                session.listener_name, reason)
    session.failed = True
    session.mechanism = session.sasl = None

    async def later() -> SaslHandshakeResponse | SaslAuthenticateResponse:
        await asyncio.sleep(session.security.failed_auth_delay_ms / 1000)
        return response

    return Delayed(later())
