"""ApiVersions (key 18), versions 0-4.

The answer lists every registered handler's range (registry.py), so nothing is advertised
that strom does not implement. v3+ carries the client's software name and version, which
must match Kafka's pattern or the request gets INVALID_REQUEST (KIP-511). A request at a
version above 4 never reaches this module: the server answers it with a v0 response holding
UNSUPPORTED_VERSION and our own range, as KIP-511 requires.
"""

from __future__ import annotations

import re

from strom.handlers.context import BrokerContext
from strom.handlers.registry import Request, handles, registrations
from strom.protocol.api import ApiKey
from strom.protocol.errors import ErrorCode
from strom.protocol.responses import ApiVersionsResponse, ApiVersionsResponseApiVersion

_SOFTWARE_PATTERN = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?")


def api_keys() -> list[ApiVersionsResponseApiVersion]:
    return [
        {"api_key": r.api_key, "min_version": r.min_version, "max_version": r.max_version}
        for r in sorted(registrations().values(), key=lambda r: r.api_key)
    ]


def unsupported_version_response() -> ApiVersionsResponse:
    """The v0 answer to an ApiVersions request newer than we know (KIP-511)."""
    own = registrations()[ApiKey.API_VERSIONS]
    return {
        "error_code": ErrorCode.UNSUPPORTED_VERSION,
        "api_keys": [
            {"api_key": own.api_key, "min_version": own.min_version, "max_version": own.max_version}
        ],
    }


@handles(ApiKey.API_VERSIONS, 0, 4)
async def api_versions(ctx: BrokerContext, request: Request) -> ApiVersionsResponse:
    error = ErrorCode.NONE
    if request.version >= 3:
        name = request.body.client_software_name
        version = request.body.client_software_version
        if not (_SOFTWARE_PATTERN.fullmatch(name or "") and _SOFTWARE_PATTERN.fullmatch(version or "")):
            error = ErrorCode.INVALID_REQUEST
    keys = api_keys() if error == ErrorCode.NONE else []
    return {"error_code": error, "api_keys": keys, "throttle_time": 0}
