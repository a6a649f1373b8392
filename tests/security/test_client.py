"""The inter-broker client settings: Kafka's JAAS line and the checks at start."""

from __future__ import annotations

import pytest

from strom.metadata.broker_config import load_broker_config
from strom.security.client import ClientSecurityError, inter_broker_security, jaas_credentials
from strom.security.listeners import Listener

SASL_PLAINTEXT = Listener("INTERNAL", "SASL_PLAINTEXT", "", 0)


def test_jaas_credentials():
    line = 'org.apache.kafka.common.security.scram.ScramLoginModule required username="broker" password="p\\"w";'
    assert jaas_credentials(line) == ("broker", 'p"w')
    with pytest.raises(ClientSecurityError):
        jaas_credentials("org.apache.kafka.common.security.scram.ScramLoginModule required;")


def test_sasl_settings_per_listener_and_mechanism():
    values = {"sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
              "listener.name.internal.scram-sha-512.sasl.jaas.config": 'x required username="b" password="s";'}
    security = inter_broker_security(values, SASL_PLAINTEXT, ("SCRAM-SHA-256", "SCRAM-SHA-512"))
    assert (security.mechanism, security.username, security.password, security.principal) == ("SCRAM-SHA-512", "b", "s", "User:b")
    assert security.ssl is None
    with pytest.raises(ClientSecurityError, match="sasl.jaas.config"):
        inter_broker_security({}, SASL_PLAINTEXT, ("PLAIN",))
    with pytest.raises(ClientSecurityError, match="not enabled"):
        inter_broker_security(values, SASL_PLAINTEXT, ("PLAIN",))


def test_the_config_loader_accepts_kafkas_per_mechanism_names():
    config = load_broker_config(None, {}, {"listener.name.internal.scram-sha-256.sasl.jaas.config": 'x required username="b" password="s";',
                                           "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-256"})
    assert config.values["sasl.mechanism.inter.broker.protocol"] == "SCRAM-SHA-256"
