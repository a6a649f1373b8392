"""TLS for SSL and SASL_SSL listeners: the server's SSLContext from Kafka's ``ssl.*`` settings
(PEM key and trust stores only) and the principal of a client certificate
(``ssl.principal.mapping.rules``)."""

from __future__ import annotations

import os
import re
import ssl
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

ANONYMOUS = "ANONYMOUS"
_CLIENT_AUTH = {"none": ssl.CERT_NONE, "requested": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}
_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}


class TlsConfigError(ValueError):
    pass


def server_context(setting: Callable[[str], str | None]) -> ssl.SSLContext:
    """``setting(name)`` returns a listener's value of an ``ssl.*`` config (its
    ``listener.name.<name>.`` override first) or None."""
    store_type = (setting("ssl.keystore.type") or "PEM").upper()
    if store_type != "PEM":
        raise TlsConfigError(f"ssl.keystore.type {store_type} is not supported: use PEM")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    versions = [v.strip() for v in (setting("ssl.enabled.protocols") or "TLSv1.2,TLSv1.3").split(",") if v.strip()]
    unknown = [v for v in versions if v not in _VERSIONS]
    if unknown or not versions:
        raise TlsConfigError(f"ssl.enabled.protocols may name TLSv1.2 and TLSv1.3 only, not {', '.join(unknown)}")
    context.minimum_version = min(_VERSIONS[v] for v in versions)
    context.maximum_version = max(_VERSIONS[v] for v in versions)
    password = setting("ssl.key.password") or setting("ssl.keystore.password")
    location = setting("ssl.keystore.location")
    chain, key = setting("ssl.keystore.certificate.chain"), setting("ssl.keystore.key")
    try:
        if location:
            context.load_cert_chain(location, password=password)
        elif chain and key:
            _load_inline(context, chain, key, password)
        else:
            raise TlsConfigError("a TLS listener needs ssl.keystore.location (a PEM file with the certificate "
                                 "chain and the private key) or ssl.keystore.certificate.chain and ssl.keystore.key")
        trust_location, trust_inline = setting("ssl.truststore.location"), setting("ssl.truststore.certificates")
        if trust_location:
            context.load_verify_locations(cafile=trust_location)
        elif trust_inline:
            context.load_verify_locations(cadata=trust_inline)
    except (OSError, ssl.SSLError) as exc:
        raise TlsConfigError(f"TLS key or trust store could not be loaded: {exc}") from None
    client_auth = (setting("ssl.client.auth") or "none").lower()
    if client_auth not in _CLIENT_AUTH:
        raise TlsConfigError(f"ssl.client.auth must be none, requested or required, not {client_auth}")
    if client_auth != "none" and not (trust_location or trust_inline):
        raise TlsConfigError(f"ssl.client.auth={client_auth} needs ssl.truststore.location to check client certificates")
    context.verify_mode = _CLIENT_AUTH[client_auth]
    ciphers = setting("ssl.cipher.suites")
    if ciphers:
        context.set_ciphers(":".join(c.strip() for c in ciphers.split(",")))
    return context


def _load_inline(context: ssl.SSLContext, chain: str, key: str, password: str | None) -> None:
    # The ssl module loads certificates from files only: a private temporary file, removed at once.
    fd, path = tempfile.mkstemp(suffix=".pem")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(chain.strip() + "\n" + key.strip() + "\n")
        context.load_cert_chain(path, password=password)
    finally:
        os.unlink(path)


# --- principals from certificates -------------------------------------------------------

@dataclass(frozen=True, slots=True)
class MappingRule:
    pattern: re.Pattern[str] | None  # None: DEFAULT (the whole distinguished name)
    replacement: str = ""
    case: str = ""  # "L" lower, "U" upper


_RULE = re.compile(r"\s*(?:(DEFAULT)|RULE:((?:\\.|[^\\/])*)/((?:\\.|[^\\/])*)/([LU]?))\s*(?:,|\n|$)")


def parse_mapping_rules(value: str | None) -> list[MappingRule]:
    """Kafka's ``ssl.principal.mapping.rules``: ``RULE:pattern/replacement/[L|U]`` items and
    ``DEFAULT``, tried in order; the first whose pattern matches the whole DN wins."""
    text = (value or "DEFAULT").strip()
    rules: list[MappingRule] = []
    pos = 0
    while pos < len(text):
        m = _RULE.match(text, pos)
        if m is None or m.end() == pos:
            raise ValueError(f"invalid ssl.principal.mapping.rules at: {text[pos:]!r}")
        if m.group(1):
            rules.append(MappingRule(None))
        else:
            # Java's $1 group references become Python's \g<1>.
            replacement = re.sub(r"\$(\d+)", r"\\g<\1>", m.group(3).replace("\\/", "/"))
            rules.append(MappingRule(re.compile(m.group(2).replace("\\/", "/")), replacement, m.group(4)))
        pos = m.end()
    return rules


def map_principal(dn: str, rules: list[MappingRule]) -> str | None:
    for rule in rules:
        if rule.pattern is None:
            return dn
        if rule.pattern.fullmatch(dn):
            name = rule.pattern.sub(rule.replacement, dn, count=1)
            return name.lower() if rule.case == "L" else name.upper() if rule.case == "U" else name
    return None


def certificate_dn(der: bytes) -> str:
    """The subject as RFC 2253 (Java's X500Principal.getName(), Kafka's default principal)."""
    from cryptography import x509  # only for client certificates: kept off the start-up path

    return x509.load_der_x509_certificate(der).subject.rfc4514_string()


def pem_certificate_dn(path: str) -> str:
    """The subject of the first certificate of a PEM file (a broker's own key store)."""
    from cryptography import x509

    return x509.load_pem_x509_certificate(Path(path).read_bytes()).subject.rfc4514_string()


def listener_setting(values: Mapping[str, str], listener: str) -> Callable[[str], str | None]:
    prefix = f"listener.name.{listener.lower()}."
    return lambda name: values.get(prefix + name, values.get(name))
