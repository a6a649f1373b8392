"""Sans-IO Kafka wire protocol: framing, headers, message codec, error codes."""

from .api import ApiKey
from .codec import (
    decode_produce_topics_v0_2,
    decode_request,
    decode_response,
    encode_produce_error_response_v0_2,
    encode_request,
    encode_response,
    request_is_flexible,
    request_versions,
    response_is_flexible,
    response_versions,
)
from .errors import ErrorCode, LocalProtocolError, RemoteProtocolError, UnsupportedVersion
from .framing import (
    FrameDecoder,
    RequestHeader,
    encode_request_frame,
    encode_response_frame,
    parse_request_header,
    response_header,
)

__all__ = [
    "ApiKey",
    "ErrorCode",
    "FrameDecoder",
    "LocalProtocolError",
    "RemoteProtocolError",
    "RequestHeader",
    "UnsupportedVersion",
    "decode_produce_topics_v0_2",
    "decode_request",
    "decode_response",
    "encode_produce_error_response_v0_2",
    "encode_request",
    "encode_request_frame",
    "encode_response",
    "encode_response_frame",
    "parse_request_header",
    "request_is_flexible",
    "request_versions",
    "response_header",
    "response_is_flexible",
    "response_versions",
]
