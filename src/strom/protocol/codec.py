"""Message codec: the only door to kio (the generated Kafka message classes).

Requests decode into kio's frozen dataclass entities with kio's native reader
(falling back to our tag-skipping reader on unknown tagged fields); responses encode
from plain dict trees with our compiled encoder (ProduceResponse, answered for every produce
request, by the hand-written protocol.produce_response). The client-side directions
(encode_request / decode_response) share the same machinery.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from ._kio import (
    EntityType,
    _KioErrorCode,
    api_key_map,
    entity_reader,
    load_request_schema,
    load_response_schema,
    schema_name_map,
)
from .api import ApiKey
from .decoder import ArrayCountGuard, FallbackDecoder
from .encoder import encode_struct, set_versions_provider
from .errors import RemoteProtocolError, UnknownFieldError, UnsupportedVersion
from .legacy_produce import decode_produce_topics_v0_2, encode_produce_error_response_v0_2
from .produce_response import encode_produce_response
from .schema import is_flexible

__all__ = [
    "decode_request",
    "decode_response",
    "decode_produce_topics_v0_2",
    "encode_request",
    "encode_response",
    "encode_produce_error_response_v0_2",
    "request_is_flexible",
    "request_versions",
    "response_is_flexible",
    "response_versions",
]

Body = bytes | bytearray | memoryview
_Decode = Callable[[Body, int], Any]

_REQUEST: Final = EntityType.request
_RESPONSE: Final = EntityType.response

_fallback = FallbackDecoder(error_code=_KioErrorCode)
_guard = ArrayCountGuard()
_classes: dict[tuple[int, int, EntityType], type] = {}
_decoders: dict[tuple[int, int, EntityType], _Decode] = {}
_flexible: dict[tuple[int, int, EntityType], bool] = {}


def _versions(api_key: int, kind: EntityType) -> list[int]:
    name = api_key_map.get(api_key)
    if name is None:
        return []
    return sorted(v for v, kinds in schema_name_map[name].items() if kind in kinds)


def _message_class(api_key: int, api_version: int, kind: EntityType) -> type:
    key = (api_key, api_version, kind)
    cls = _classes.get(key)
    if cls is None:
        if api_version not in _versions(api_key, kind):
            raise UnsupportedVersion(f"no {kind.name} schema for api_key={api_key} v{api_version}")
        load = load_request_schema if kind is _REQUEST else load_response_schema
        cls = _classes[key] = load(api_key, api_version)
    return cls


def _all_versions(cls: type) -> list[type]:
    """Every version of the request or response ``cls`` is one version of (for the encoder's
    unknown-field check: a dict may carry the fields of any version)."""
    api_key, kind = getattr(cls, "__api_key__", None), getattr(cls, "__type__", None)
    if not isinstance(api_key, int) or kind not in (_REQUEST, _RESPONSE):
        return [cls]
    return [_message_class(api_key, version, kind) for version in _versions(api_key, kind)]


set_versions_provider(_all_versions)


def _encode(api_key: int, api_version: int, kind: EntityType, body: Mapping[str, Any]) -> bytes:
    try:
        return encode_struct(_message_class(api_key, api_version, kind), body)
    except UnknownFieldError as exc:
        api = ApiKey(api_key).name if api_key in ApiKey._value2member_map_ else f"api_key={api_key}"
        raise UnknownFieldError(
            f"{api} {kind.name} v{api_version}: {exc}", struct=exc.struct, fields=exc.fields
        ) from None


def _make_decoder(cls: type) -> _Decode:
    native: Callable[[Body, int], tuple[Any, int]] = entity_reader(cls)
    check_array_counts = _guard.check

    def decode(body: Body, offset: int) -> Any:
        # kio's reader reserves an array's declared count up front, and a failed
        # allocation aborts the process: reject counts the body cannot hold first.
        check_array_counts(cls, body, offset)
        try:
            return native(body, offset)[0]
        except KeyError:
            # kio rejects unknown tagged fields; Kafka says skip them.
            return _fallback.decode(cls, memoryview(body)[offset:])
        except Exception as exc:  # the native reader raises assorted types
            raise RemoteProtocolError(f"malformed {cls.__name__}: {exc}") from exc

    return decode


def _decode(api_key: int, api_version: int, kind: EntityType, body: Body, offset: int) -> Any:
    key = (api_key, api_version, kind)
    decode = _decoders.get(key)
    if decode is None:
        decode = _decoders[key] = _make_decoder(_message_class(api_key, api_version, kind))
    return decode(body, offset)


def decode_request(api_key: int, api_version: int, body: Body, offset: int = 0) -> Any:
    """Decode a request body (from ``offset``) into kio's entity for that version.

    Raises UnsupportedVersion when no schema exists, RemoteProtocolError when the
    body is malformed. Trailing bytes are ignored.
    """
    return _decode(api_key, api_version, _REQUEST, body, offset)


def decode_response(api_key: int, api_version: int, body: Body, offset: int = 0) -> Any:
    """Decode a response body into kio's entity (client side; see decode_request)."""
    return _decode(api_key, api_version, _RESPONSE, body, offset)


def encode_response(api_key: int, api_version: int, body: Mapping[str, Any]) -> bytes:
    """Encode a dict tree (kio field names) as the response body of that version.

    Missing fields take their default; keys of other versions of the message are ignored (one
    dict can serve every version), a key that no version has raises UnknownFieldError.
    Raises UnsupportedVersion, or LocalProtocolError for values that cannot be encoded.
    """
    if api_key == 0 and type(body) is dict:  # the hot path: one per produce request
        fast = encode_produce_response(api_version, body)
        if fast is not None:
            return fast
    return _encode(api_key, api_version, _RESPONSE, body)


def encode_request(api_key: int, api_version: int, body: Mapping[str, Any]) -> bytes:
    """Encode a dict tree as a request body (client side; see encode_response)."""
    return _encode(api_key, api_version, _REQUEST, body)


def request_versions(api_key: int) -> tuple[int, int]:
    """(min, max) request version with a schema; UnsupportedVersion for unknown keys."""
    versions = _versions(api_key, _REQUEST)
    if not versions:
        raise UnsupportedVersion(f"unknown api_key={api_key}")
    return versions[0], versions[-1]


def response_versions(api_key: int) -> tuple[int, int]:
    versions = _versions(api_key, _RESPONSE)
    if not versions:
        raise UnsupportedVersion(f"unknown api_key={api_key}")
    return versions[0], versions[-1]


def _is_flexible(api_key: int, api_version: int, kind: EntityType) -> bool:
    key = (api_key, api_version, kind)
    flexible = _flexible.get(key)
    if flexible is None:
        versions = _versions(api_key, kind)
        if not versions or api_version < versions[0]:
            # Unknown keys and removed old versions (e.g. Produce v0-2) predate KIP-482.
            flexible = False
        else:
            # Flexible ranges are always open-ended ("N+"), so a version newer than the
            # schemas is flexible iff the newest known one is (as Kafka computes it).
            known = min(api_version, versions[-1])
            flexible = is_flexible(_message_class(api_key, known, kind))
        _flexible[key] = flexible
    return flexible


def request_is_flexible(api_key: int, api_version: int) -> bool:
    """Whether this request version uses flexible encoding (and request header v2)."""
    return _is_flexible(api_key, api_version, _REQUEST)


def response_is_flexible(api_key: int, api_version: int) -> bool:
    """Whether this response version uses flexible encoding."""
    return _is_flexible(api_key, api_version, _RESPONSE)
