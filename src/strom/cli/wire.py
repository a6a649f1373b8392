"""The two questions confluent-kafka's Python API cannot ask, sent over a plain socket with
strom's own codec: which APIs a broker offers (ApiVersions v0, which every broker answers) and
how big partitions are on disk (DescribeLogDirs, key 35; the AdminClient has no
describe_log_dirs).

Both are standard Kafka requests, so they work against any broker on a PLAINTEXT listener.
When they cannot be answered (TLS/SASL, an old broker, an error) the callers get None and say
"unknown" rather than guess.
"""

from __future__ import annotations

import socket
import ssl
import struct
from collections.abc import Iterable, Mapping
from typing import Any

from strom.protocol import (
    ApiKey,
    decode_response,
    encode_request,
    encode_request_frame,
    request_versions,
    response_is_flexible,
)
from strom.protocol.primitives import skip_tagged_fields

_SIZE = struct.Struct(">i")
CLIENT_ID = "strom-cli"


class _Connection:
    """One blocking connection; ``conf`` takes librdkafka's security settings
    (security.protocol, ssl.ca.location, ssl.certificate.location, ssl.key.location,
    sasl.mechanism, sasl.username, sasl.password) so the CLI reaches TLS and SASL listeners."""

    def __init__(self, host: str, port: int, timeout: float, conf: Mapping[str, str] | None = None) -> None:
        conf = conf or {}
        protocol = conf.get("security.protocol", "plaintext").upper()
        sock = socket.create_connection((host, port), timeout=timeout)
        if protocol in ("SSL", "SASL_SSL"):
            context = ssl.create_default_context(cafile=conf.get("ssl.ca.location"))
            context.check_hostname = conf.get("ssl.endpoint.identification.algorithm", "https") == "https"
            if conf.get("ssl.certificate.location"):
                context.load_cert_chain(conf["ssl.certificate.location"], conf.get("ssl.key.location"),
                                        conf.get("ssl.key.password"))
            sock = context.wrap_socket(sock, server_hostname=host)
        self.sock = sock
        self.correlation_id = 0
        if protocol.startswith("SASL_"):
            self._authenticate(conf.get("sasl.mechanism", "GSSAPI").upper(), conf.get("sasl.username", ""),
                               conf.get("sasl.password", ""))

    def _authenticate(self, mechanism: str, user: str, password: str) -> None:
        handshake: Any = self.call(ApiKey.SASL_HANDSHAKE, 1, {"mechanism": mechanism})
        if handshake.error_code:
            raise ConnectionError(f"the broker does not offer SASL {mechanism} (it offers {', '.join(handshake.mechanisms)})")
        if mechanism == "PLAIN":
            self._sasl(f"\0{user}\0{password}".encode())
            return
        from scramp import ScramClient

        scram = ScramClient([mechanism], user, password)
        scram.set_server_first(self._sasl(scram.get_client_first().encode()).decode())
        scram.set_server_final(self._sasl(scram.get_client_final().encode()).decode())  # checks the broker too

    def _sasl(self, token: bytes) -> bytes:
        answer: Any = self.call(ApiKey.SASL_AUTHENTICATE, 2, {"auth_bytes": token})
        if answer.error_code:
            raise ConnectionError(answer.error_message or "SASL authentication failed")
        return bytes(answer.auth_bytes)

    def close(self) -> None:
        self.sock.close()

    def _read(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("the broker closed the connection")
            buf += chunk
        return bytes(buf)

    def call(self, api_key: int, version: int, body: Mapping[str, object]) -> object:
        self.correlation_id += 1
        frame = encode_request_frame(
            api_key, version, self.correlation_id, CLIENT_ID, encode_request(api_key, version, body)
        )
        self.sock.sendall(frame)
        (size,) = _SIZE.unpack(self._read(4))
        data = self._read(size)
        (correlation_id,) = _SIZE.unpack_from(data, 0)
        if correlation_id != self.correlation_id:
            raise ConnectionError("the broker answered out of order")
        pos = 4
        # ApiVersions responses always use header v0 (KIP-511).
        if api_key != ApiKey.API_VERSIONS and response_is_flexible(api_key, version):
            pos = skip_tagged_fields(data, pos)
        return decode_response(api_key, version, data, pos)


def split_address(address: str) -> tuple[str, int] | None:
    """``host:port`` (``[v6]:port``) to (host, port); None when it is not of that form."""
    host, sep, port = address.strip().rpartition(":")
    if not sep or not port.isdigit() or not host:
        return None
    return host.strip("[]"), int(port)


def _offered(conn: _Connection) -> dict[int, tuple[int, int]] | None:
    answer = conn.call(ApiKey.API_VERSIONS, 0, {})
    if int(answer.error_code) != 0:  # type: ignore[attr-defined]
        return None
    return {int(k.api_key): (k.min_version, k.max_version) for k in answer.api_keys}  # type: ignore[attr-defined]


def api_versions(host: str, port: int, timeout: float) -> dict[int, tuple[int, int]] | None:
    """``{api_key: (min, max)}`` the broker offers, or None when it cannot be asked."""
    try:
        conn = _Connection(host, port, timeout)
    except OSError:
        return None
    try:
        return _offered(conn)
    except Exception:  # noqa: BLE001 - "unknown", never a crash
        return None
    finally:
        conn.close()


def _version(conn: _Connection) -> int | None:
    offered = _offered(conn)
    if offered is None or ApiKey.DESCRIBE_LOG_DIRS not in offered:
        return None
    ours_min, ours_max = request_versions(ApiKey.DESCRIBE_LOG_DIRS)
    theirs_min, theirs_max = offered[ApiKey.DESCRIBE_LOG_DIRS]
    version = min(ours_max, theirs_max)
    return version if version >= max(ours_min, theirs_min) else None


def partition_sizes(
    host: str, port: int, topic: str, partitions: Iterable[int], timeout: float
) -> dict[int, int] | None:
    """``{partition: bytes}`` of this broker's replicas of ``topic`` (summed over its log
    directories, ignoring future replicas), or None when the broker cannot tell us."""
    try:
        conn = _Connection(host, port, timeout)
    except OSError:
        return None
    try:
        version = _version(conn)
        if version is None:
            return None
        answer = conn.call(
            ApiKey.DESCRIBE_LOG_DIRS, version, {"topics": [{"topic": topic, "partitions": sorted(partitions)}]}
        )
        if version >= 3 and int(answer.error_code) != 0:  # type: ignore[attr-defined]
            return None
        sizes: dict[int, int] = {}
        for result in answer.results:  # type: ignore[attr-defined]
            if int(result.error_code) != 0:
                continue
            for entry in result.topics:
                if entry.name != topic:
                    continue
                for p in entry.partitions:
                    if not p.is_future_key:
                        sizes[p.partition_index] = sizes.get(p.partition_index, 0) + p.partition_size
        return sizes
    except Exception:  # noqa: BLE001 - any failure means "size unknown", never a crash
        return None
    finally:
        conn.close()


def call(brokers: str, timeout: float, conf: Mapping[str, str], api_key: int, version: int,
         body: Mapping[str, object]) -> Any:
    """One request to the first reachable bootstrap broker (with the client's security
    settings); raises ConnectionError with a sentence when none answers."""
    errors = []
    for address in brokers.split(","):
        where = split_address(address)
        if where is None:
            continue
        try:
            conn = _Connection(*where, timeout, conf)
        except (OSError, ssl.SSLError) as exc:
            errors.append(f"{address}: {exc}")
            continue
        try:
            return conn.call(api_key, version, body)
        finally:
            conn.close()
    raise ConnectionError("; ".join(errors) or f"no broker address in {brokers!r}")
