"""A key that no version of a message has is refused, never sent as the field's default.

Handlers build one dict for every version of a response, so the keys of other versions of the
same struct pass; a misspelled key (``eror_code``) used to be dropped silently, and the client
read the default (error NONE). Every handler test encodes its responses with this strict
encoder (tests/handlers/harness.py goes through encode_response), so the suite checks every
dict a handler builds.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kio.index import load_request_schema, load_response_schema

from strom.console.metrics import BrokerMetrics
from strom.handlers.registry import Registration, registrations
from strom.protocol import codec
from strom.protocol.api import ApiKey
from strom.protocol.encoder import allowed_fields, encode_struct
from strom.protocol.errors import LocalProtocolError, UnknownFieldError
from strom.protocol.framing import encode_request_frame
from strom.protocol.produce_response import (
    PARTITION_FIELDS,
    RECORD_ERROR_FIELDS,
    RESPONSE_FIELDS,
    TOPIC_FIELDS,
    encode_produce_response,
)
from strom.protocol.schema import struct_fields


def test_a_misspelled_field_raises() -> None:
    with pytest.raises(UnknownFieldError) as raised:
        codec.encode_response(ApiKey.HEARTBEAT, 4, {"eror_code": 27})
    message = str(raised.value)
    # the API, the version, the struct, the key, and the field meant
    assert "HEARTBEAT response v4" in message
    assert "HeartbeatResponse" in message
    assert "'eror_code' (did you mean 'error_code'?)" in message
    assert raised.value.fields == ("eror_code",)
    assert isinstance(raised.value, LocalProtocolError)


def test_the_field_spelled_right_is_sent() -> None:
    wire = codec.encode_response(ApiKey.HEARTBEAT, 4, {"error_code": 27})
    assert codec.decode_response(ApiKey.HEARTBEAT, 4, wire).error_code == 27


def test_a_field_of_another_version_passes() -> None:
    # Heartbeat v0 has no throttle_time (v1+): one dict serves every version.
    wire = codec.encode_response(ApiKey.HEARTBEAT, 0, {"throttle_time": 5, "error_code": 27})
    assert codec.decode_response(ApiKey.HEARTBEAT, 0, wire).error_code == 27
    # Nested: MetadataResponse v1 partitions have no leader_epoch (v7+), topics no topic_id (v10+).
    body = {"topics": [{"name": "t", "topic_id": None, "partitions": [{"partition_index": 0, "leader_epoch": 3}]}]}
    decoded = codec.decode_response(ApiKey.METADATA, 1, codec.encode_response(ApiKey.METADATA, 1, body))
    assert decoded.topics[0].partitions[0].partition_index == 0


def test_a_nested_misspelled_field_names_its_path() -> None:
    body = {"topics": [{"name": "t", "partitions": [{"partition_index": 0, "leader_epoc": 3}]}]}
    with pytest.raises(UnknownFieldError, match=r"METADATA response v12: .*'leader_epoc' \(did you mean "
                       r"'leader_epoch'\?\) in MetadataResponse\.topics\.partitions") as raised:
        codec.encode_response(ApiKey.METADATA, 12, body)
    assert raised.value.struct.startswith("MetadataResponse.topics.partitions")


def test_a_field_of_another_level_is_refused() -> None:
    # partitions belongs to a topic, not to the response
    with pytest.raises(UnknownFieldError, match="MetadataResponse"):
        codec.encode_response(ApiKey.METADATA, 12, {"partitions": []})


def test_session_lifetime_ms_was_such_a_mistake() -> None:
    """SaslAuthenticate's field is session_lifetime; session_lifetime_ms went out as 0."""
    with pytest.raises(UnknownFieldError, match="did you mean 'session_lifetime'"):
        codec.encode_response(ApiKey.SASL_AUTHENTICATE, 2, {"error_code": 0, "session_lifetime_ms": 5000})


def test_requests_are_checked_too() -> None:
    with pytest.raises(UnknownFieldError, match="METADATA request v12"):
        codec.encode_request(ApiKey.METADATA, 12, {"topic": None})


def test_entities_pass() -> None:
    """kio entities (e.g. a decoded request's structs) are encoded like the dicts of their fields."""
    cls = load_response_schema(ApiKey.HEARTBEAT, 4)
    assert codec.encode_response(ApiKey.HEARTBEAT, 4, cls(throttle_time=0, error_code=27)) == (
        codec.encode_response(ApiKey.HEARTBEAT, 4, {"error_code": 27})
    )


def _every_version(api_key: int, load: Any, versions: tuple[int, int]) -> set[str]:
    return {spec.name for v in range(versions[0], versions[1] + 1) for spec in struct_fields(load(api_key, v))}


REGISTERED = sorted(registrations().items())


@pytest.mark.parametrize(("api_key", "registration"), REGISTERED, ids=[ApiKey(k).name.lower() for k, _ in REGISTERED])
def test_every_versions_fields_pass_and_no_others(api_key: int, registration: Registration) -> None:
    """For every served API, request and response, at every version: a dict with the top-level
    fields of all versions encodes (None: the default), one more key is refused."""
    for load, encode, versions in (
        (load_response_schema, codec.encode_response, codec.response_versions(api_key)),
        (load_request_schema, codec.encode_request, codec.request_versions(api_key)),
    ):
        union = _every_version(api_key, load, versions)
        body = dict.fromkeys(union)
        for version in range(registration.decodable_from, registration.max_version + 1):
            assert allowed_fields(load(api_key, version)) == union
            encode(api_key, version, body)
            with pytest.raises(UnknownFieldError):
                encode(api_key, version, {**body, "no_such_field": None})


def test_encode_struct_without_versions_knows_its_own_fields() -> None:
    """A class that is not a version of a known message (here a nested struct encoded on its
    own) allows exactly its own fields."""
    (topic,) = (s.struct for s in struct_fields(load_response_schema(ApiKey.METADATA, 12)) if s.name == "topics")
    assert topic is not None
    encode_struct(topic, {"name": "t"})


# -- the produce fast path -----------------------------------------------------------------


def test_the_produce_fast_path_knows_every_versions_fields() -> None:
    """The hand-written encoder's key sets are the schemas' (so it never falls back for a
    correct dict, and leaves every wrong one to the generic encoder, which refuses it)."""
    versions = codec.response_versions(ApiKey.PRODUCE)
    classes = [load_response_schema(ApiKey.PRODUCE, v) for v in range(versions[0], versions[1] + 1)]

    def names(path: tuple[str, ...]) -> set[str]:
        found: set[str] = set()
        for cls in classes:
            at: type | None = cls
            for step in path:
                at = next((s.struct for s in struct_fields(at) if s.name == step), None) if at else None
            if at is not None:  # record_errors: v8+
                found.update(s.name for s in struct_fields(at))
        return found

    assert names(()) == RESPONSE_FIELDS
    assert names(("responses",)) == TOPIC_FIELDS
    assert names(("responses", "partition_responses")) == PARTITION_FIELDS
    assert names(("responses", "partition_responses", "record_errors")) == RECORD_ERROR_FIELDS


@pytest.mark.parametrize("where", ["response", "topic", "partition", "record_error"])
def test_the_produce_fast_path_refuses_a_misspelled_field(where: str) -> None:
    error: dict[str, Any] = {"batch_index": 0}
    partition: dict[str, Any] = {"index": 0, "error_code": 0, "base_offset": 0, "record_errors": [error]}
    topic: dict[str, Any] = {"name": "t", "partition_responses": [partition]}
    body: dict[str, Any] = {"responses": [topic]}
    assert encode_produce_response(9, body) is not None
    {"response": body, "topic": topic, "partition": partition, "record_error": error}[where]["eror_code"] = 1
    assert encode_produce_response(9, body) is None
    with pytest.raises(UnknownFieldError, match="unknown field .eror_code."):
        codec.encode_response(ApiKey.PRODUCE, 9, body)


# -- the server ----------------------------------------------------------------------------


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False

    def write(self, data: Any) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default


def test_the_server_closes_the_connection_instead_of_answering(caplog: pytest.LogCaptureFixture) -> None:
    """A response that cannot be encoded is logged and the connection closed: the client
    retries, and never reads a default in place of what the handler meant."""
    from strom.server.connection import CloseReason, KafkaConnection

    async def misspelled(ctx: Any, request: Any) -> dict[str, Any]:
        return {"eror_code": 27}

    async def run() -> tuple[KafkaConnection, _Transport]:
        registry = {ApiKey.HEARTBEAT: Registration(ApiKey.HEARTBEAT, 0, 4, misspelled, 0)}
        ctx = SimpleNamespace(image=SimpleNamespace(client_quotas={}), metrics=BrokerMetrics())  # no quotas to charge
        connection = KafkaConnection(ctx, registry, 1 << 20, max_idle_ms=0)  # type: ignore[arg-type]
        transport = _Transport()
        connection.connection_made(transport)
        body = codec.encode_request(ApiKey.HEARTBEAT, 4, {"group_id": "g", "generation_id": 1, "member_id": "m"})
        connection.data_received(encode_request_frame(ApiKey.HEARTBEAT, 4, 1, "c", body))
        for _ in range(20):
            await asyncio.sleep(0)
            if connection.close_reason is not None:
                break
        connection.connection_lost(None)
        return connection, transport

    with caplog.at_level(logging.ERROR, logger="strom.server.connection"):
        connection, transport = asyncio.run(run())
    assert connection.close_reason is CloseReason.HANDLER_FAILED
    assert transport.closed and not transport.written
    assert "eror_code" in caplog.text
    # what tests/conftest.py looks for in the logs of the brokers the e2e tests start
    from tests.conftest import UNENCODABLE_RESPONSE

    assert UNENCODABLE_RESPONSE in caplog.text


# -- the typed responses (strom.protocol.responses) ------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


def test_the_response_types_are_up_to_date() -> None:
    """protocol/responses.py is generated from the schemas (tools/gen_response_types.py)."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_response_types.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_mypy_flags_a_misspelled_key_in_a_typed_response(tmp_path: Path) -> None:
    """What the type check of scripts/test.sh catches before any test runs: the SaslAuthenticate
    mistake, in a handler annotated with its response type."""
    mypy_api = pytest.importorskip("mypy.api")
    handler = tmp_path / "handler.py"
    handler.write_text(
        "from strom.protocol.responses import SaslAuthenticateResponse\n\n\n"
        "def answer(lifetime: int) -> SaslAuthenticateResponse:\n"
        '    response: SaslAuthenticateResponse = {"error_code": 0, "auth_bytes": b""}\n'
        '    response["session_lifetime_ms"] = lifetime\n'
        "    return response\n"
    )
    out, _err, status = mypy_api.run([
        "--strict", "--follow-imports=silent", "--cache-dir", str(tmp_path / "cache"), str(handler),
    ])
    assert status == 1, out
    assert '"SaslAuthenticateResponse" has no key "session_lifetime_ms"' in out, out
