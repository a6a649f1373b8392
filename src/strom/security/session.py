"""Per-connection security state: the listener's settings, the principal, and where the
SASL exchange stands (KIP-152's handshake then authenticate; KIP-368's re-authentication)."""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass, field

from strom.protocol.api import ApiKey
from strom.security.listeners import Listener
from strom.security.sasl import SaslServer
from strom.security.tls import ANONYMOUS, MappingRule, parse_mapping_rules

# What a client may send before it has authenticated (Kafka's SaslServerAuthenticator).
PRE_AUTH_APIS = frozenset({ApiKey.API_VERSIONS, ApiKey.SASL_HANDSHAKE, ApiKey.SASL_AUTHENTICATE})


@dataclass(frozen=True)
class ListenerSecurity:
    """One listener's security settings, shared by its connections."""

    listener: Listener
    mechanisms: tuple[str, ...] = ()  # sasl.enabled.mechanisms
    principal_rules: list[MappingRule] = field(default_factory=lambda: parse_mapping_rules(None))
    reauth_ms: int = 0  # connections.max.reauth.ms (0: sessions never expire)
    failed_auth_delay_ms: int = 100  # connection.failed.authentication.delay.ms
    max_receive_before_auth: int = 524288  # sasl.server.max.receive.size
    tls: ssl.SSLContext | None = None  # SSL and SASL_SSL listeners


@dataclass
class Session:
    security: ListenerSecurity
    principal: str = f"User:{ANONYMOUS}"
    authenticated: bool = False
    mechanism: str | None = None  # chosen by the last SaslHandshake, until its exchange ends
    sasl: SaslServer | None = None
    reauthenticating: bool = False
    expires_at: float | None = None  # event-loop time at which the SASL session ends
    failed: bool = False  # authentication failed: close once the (delayed) response is out
    internal: bool = False  # the broker's own in-process requests (the console's sampler): never denied

    def __post_init__(self) -> None:
        if not self.security.listener.sasl:
            self.authenticated = True

    @property
    def listener_name(self) -> str:
        return self.security.listener.name

    def refusal(self, api_key: int, now: float | None = None) -> str | None:
        """Why a request of ``api_key`` may not be served now (the connection is then
        closed, as Kafka does), or None. ``now``: time.monotonic(), read only when a
        session lifetime applies."""
        if api_key in PRE_AUTH_APIS:
            return None
        if not self.authenticated or self.reauthenticating:
            return f"api_key={api_key} before SASL authentication completed"
        if self.expires_at is not None and (time.monotonic() if now is None else now) >= self.expires_at:
            return "the SASL session expired (connections.max.reauth.ms) and the client did not re-authenticate"
        return None
