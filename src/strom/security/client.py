"""How this broker connects to other brokers (cluster mode): the inter-broker listener's TLS
and SASL settings seen from the client side, as Kafka configures them
(``inter.broker.listener.name``, ``sasl.mechanism.inter.broker.protocol``, and the broker's
own credentials in ``listener.name.<listener>.<mechanism>.sasl.jaas.config``)."""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass

from strom.security.listeners import Listener
from strom.security.tls import (
    ANONYMOUS,
    listener_setting,
    map_principal,
    parse_mapping_rules,
    pem_certificate_dn,
)

_JAAS_OPTION = re.compile(r'(\w+)\s*=\s*"((?:[^"\\]|\\.)*)"')


class ClientSecurityError(ValueError):
    pass


@dataclass(frozen=True)
class ClientSecurity:
    ssl: ssl.SSLContext | None = None
    mechanism: str | None = None  # SASL, when set
    username: str = ""
    password: str = ""
    principal: str = f"User:{ANONYMOUS}"  # who the other brokers see


def jaas_credentials(jaas: str) -> tuple[str, str]:
    """username and password of a ``...LoginModule required username="u" password="p";``."""
    options = {k: v.replace('\\"', '"') for k, v in _JAAS_OPTION.findall(jaas)}
    if "username" not in options or "password" not in options:
        raise ClientSecurityError("the sasl.jaas.config names no username and password")
    return options["username"], options["password"]


def inter_broker_security(values: Mapping[str, str], listener: Listener, enabled: tuple[str, ...]) -> ClientSecurity:
    setting = listener_setting(values, listener.name)
    context = None
    principal = f"User:{ANONYMOUS}"
    if listener.tls:
        context = ssl.create_default_context(cafile=setting("ssl.truststore.location"),
                                             cadata=setting("ssl.truststore.certificates"))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.check_hostname = (setting("ssl.endpoint.identification.algorithm") or "https") == "https"
        keystore = setting("ssl.keystore.location")
        if (setting("ssl.client.auth") or "none") != "none" and keystore:
            # the listener asks for client certificates: present this broker's own
            context.load_cert_chain(keystore, password=setting("ssl.key.password"))
            dn = pem_certificate_dn(keystore)
            principal = f"User:{map_principal(dn, parse_mapping_rules(setting('ssl.principal.mapping.rules')))}"
    if not listener.sasl:
        return ClientSecurity(context, principal=principal)
    mechanism = (values.get("sasl.mechanism.inter.broker.protocol") or (enabled[0] if enabled else "")).upper()
    if mechanism not in enabled:
        raise ClientSecurityError(f"sasl.mechanism.inter.broker.protocol {mechanism or '(unset)'} is not enabled "
                                  f"on the inter-broker listener {listener.name}")
    prefix = f"listener.name.{listener.name.lower()}."
    jaas = (values.get(f"{prefix}{mechanism.lower()}.sasl.jaas.config") or values.get(f"{prefix}sasl.jaas.config")
            or values.get("sasl.jaas.config"))
    if not jaas:
        raise ClientSecurityError(
            f"the inter-broker listener {listener.name} uses SASL: give this broker's credentials in "
            f"{prefix}{mechanism.lower()}.sasl.jaas.config (e.g. org.apache.kafka.common.security.scram."
            f'ScramLoginModule required username="broker" password="...";)')
    username, password = jaas_credentials(jaas)
    return ClientSecurity(context, mechanism, username, password, f"User:{username}")
