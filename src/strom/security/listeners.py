"""Kafka's listener settings: ``listeners``, ``advertised.listeners`` and
``listener.security.protocol.map``, parsed into named listeners with a security protocol."""

from __future__ import annotations

from dataclasses import dataclass

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
DEFAULT_PROTOCOL_MAP = {p: p for p in SECURITY_PROTOCOLS}


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str  # the listener name, upper case as Kafka normalises it
    host: str  # "" binds every interface
    port: int


@dataclass(frozen=True, slots=True)
class Listener:
    name: str
    protocol: str  # one of SECURITY_PROTOCOLS
    host: str
    port: int

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")


def parse_endpoints(value: str) -> list[Endpoint]:
    """``NAME://host:port[,...]``; a bare ``host:port`` is a PLAINTEXT listener. Names and
    ports must be unique (port 0, a free port, may repeat)."""
    endpoints: list[Endpoint] = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        name, sep, address = item.partition("://")
        if not sep:
            name, address = "PLAINTEXT", item
        host, sep, port_text = address.rpartition(":")
        if not name or not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
            raise ValueError(f"'{item}' is not of the form NAME://host:port")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        endpoints.append(Endpoint(name.upper(), host, int(port_text)))
    if not endpoints:
        raise ValueError("no listener given")
    names = [e.name for e in endpoints]
    if len(set(names)) != len(names):
        raise ValueError(f"each listener must have a different name: {', '.join(names)}")
    ports = [e.port for e in endpoints if e.port]
    if len(set(ports)) != len(ports):
        raise ValueError("each listener must have a different port")
    return endpoints


def parse_protocol_map(value: str | None) -> dict[str, str]:
    """``NAME:PROTOCOL,...`` (Kafka's listener.security.protocol.map)."""
    if value is None:
        return dict(DEFAULT_PROTOCOL_MAP)
    mapping: dict[str, str] = {}
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        name, sep, protocol = item.partition(":")
        protocol = protocol.strip().upper()
        if not sep or protocol not in SECURITY_PROTOCOLS:
            raise ValueError(f"'{item}' is not NAME:PROTOCOL with PROTOCOL one of {', '.join(SECURITY_PROTOCOLS)}")
        mapping[name.strip().upper()] = protocol
    return mapping


def resolve(endpoints: list[Endpoint], protocol_map: dict[str, str]) -> list[Listener]:
    listeners = []
    for e in endpoints:
        protocol = protocol_map.get(e.name)
        if protocol is None:
            raise ValueError(f"listener {e.name} has no security protocol in listener.security.protocol.map")
        listeners.append(Listener(e.name, protocol, e.host, e.port))
    return listeners


def format_endpoints(endpoints: list[Endpoint] | list[Listener]) -> str:
    return ",".join(f"{e.name}://{f'[{e.host}]' if ':' in e.host else e.host}:{e.port}" for e in endpoints)
