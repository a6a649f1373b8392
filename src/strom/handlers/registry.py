"""The one list of APIs strom serves.

Each handler module registers itself with ``@handles(ApiKey.X, min_version, max_version)``;
dispatch and the ApiVersions answer are both built from this table, so an API is advertised
exactly when a handler for it exists (API-SCOPE.md: never advertise what is not implemented).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from strom.protocol.framing import RequestHeader

if TYPE_CHECKING:
    from strom.handlers.context import BrokerContext
    from strom.security.session import Session


@dataclass(frozen=True, slots=True)
class Request:
    header: RequestHeader
    body: Any  # the decoded request entity (kio dataclass); field names are Kafka's, snake_case
    client_host: str = ""  # the peer's IP address (group members are described with it)
    session: Session | None = None  # the connection's security state (principal, SASL)

    @property
    def version(self) -> int:
        return self.header.api_version


def listener_of(request: Request) -> str | None:
    return request.session.listener_name if request.session is not None else None


@dataclass(frozen=True, slots=True)
class RawResponse:
    """A response body the handler encoded itself: bytes, and file regions the server sends
    with os.sendfile (zero copy). ``size`` is the total body length."""

    chunks: list[Any]  # bytes | strom.log FileRegion
    size: int
    throttle_ms: int = 0  # a quota's throttle time, encoded in the body: the server mutes the connection
    to_follower: bool = False  # a follower's fetch: records appended moments ago (see server.connection)


@dataclass(frozen=True, slots=True)
class Delayed:
    """A response that completes later (an acks=all produce waiting for its replicas). The
    connection goes on serving the requests behind it and still answers in request order
    (redpanda's two-phase handlers: the first phase, which ran in order, did the appends)."""

    result: Awaitable[Any]  # the response as a handler returns it


# A handler returns the response body as a plain dict tree (encoded by protocol.codec at the
# request's version; protocol.responses has a TypedDict for each API's, which mypy checks the
# keys of), a RawResponse it encoded itself, a Delayed one, or None when no response is sent
# (Produce with acks=0).
Response = Mapping[str, object] | RawResponse | Delayed | None
Handler = Callable[["BrokerContext", Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Registration:
    api_key: int
    min_version: int
    max_version: int
    handler: Handler
    # Versions advertised but answered with an error without decoding (Produce v0-2).
    decodable_from: int


_REGISTRY: dict[int, Registration] = {}


def handles(
    api_key: int, min_version: int, max_version: int, *, decodable_from: int | None = None
) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        if api_key in _REGISTRY:
            raise RuntimeError(f"API key {api_key} registered twice")
        _REGISTRY[api_key] = Registration(
            api_key, min_version, max_version, handler,
            min_version if decodable_from is None else decodable_from,
        )
        return handler

    return register


def registrations() -> dict[int, Registration]:
    """Every registered API, importing the handler modules first."""
    from strom.handlers import load_all

    load_all()
    return _REGISTRY
