"""Broker config loading: TOML < STROM_* environment < flags, with checked values."""

from __future__ import annotations

from pathlib import Path

import pytest

from strom.metadata.broker_config import BrokerConfigError, load_broker_config
from strom.security.listeners import Endpoint, Listener, parse_endpoints


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "strom.toml"
    path.write_text(text)
    return path


def test_defaults():
    config = load_broker_config(None, {}, {})
    assert (config.listen_host, config.listen_port, config.node_id) == ("127.0.0.1", 9092, 0)
    assert str(config.data_dir) == "./data"
    assert config.num_partitions == 1 and config.auto_create_topics_enable


def test_toml_env_and_flags_in_priority_order(tmp_path):
    path = write(tmp_path, 'num.partitions = 2\nlog.dirs = "/from/file"\n[auto.create.topics]\nenable = false\n')
    config = load_broker_config(path, {}, {})
    assert config.num_partitions == 2 and str(config.data_dir) == "/from/file"
    assert config.auto_create_topics_enable is False
    config = load_broker_config(path, {"STROM_NUM_PARTITIONS": "3", "STROM_BROKERS": "x:1"}, {})
    assert config.num_partitions == 3
    config = load_broker_config(path, {"STROM_NUM_PARTITIONS": "3"}, {"num.partitions": "4"})
    assert config.num_partitions == 4
    assert config.static_configs()["num.partitions"] == "4"


def test_listeners():
    config = load_broker_config(None, {}, {"listeners": "PLAINTEXT://0.0.0.0:19092",
                                            "advertised.listeners": "PLAINTEXT://broker.example:9093"})
    assert (config.listen_host, config.listen_port) == ("0.0.0.0", 19092)
    assert (config.advertised_host, config.advertised_port) == ("broker.example", 9093)
    assert parse_endpoints("[::1]:9092") == [Endpoint("PLAINTEXT", "::1", 9092)]


def test_several_named_listeners():
    config = load_broker_config(None, {}, {
        "listeners": "PLAINTEXT://127.0.0.1:9092,SASL_SSL://0.0.0.0:9093,internal://127.0.0.1:0",
        "advertised.listeners": "SASL_SSL://kafka.example:19093",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,INTERNAL:SSL",
        "inter.broker.listener.name": "internal",
        "listener.name.internal.ssl.client.auth": "required",
    })
    assert config.listeners() == [Listener("PLAINTEXT", "PLAINTEXT", "127.0.0.1", 9092),
                                  Listener("SASL_SSL", "SASL_SSL", "0.0.0.0", 9093),
                                  Listener("INTERNAL", "SSL", "127.0.0.1", 0)]
    assert config.advertised({"PLAINTEXT": 9092, "SASL_SSL": 9093, "INTERNAL": 40000}) == {
        "PLAINTEXT": ("127.0.0.1", 9092), "SASL_SSL": ("kafka.example", 19093), "INTERNAL": ("127.0.0.1", 40000)}
    assert config.inter_broker_listener() == "INTERNAL"
    assert config.static_configs()["listener.name.internal.ssl.client.auth"] == "required"


@pytest.mark.parametrize(("overrides", "message"), [
    ({"listeners": "PLAINTEXT://:9092,PLAINTEXT://:9093"}, "different name"),
    ({"listeners": "A://:9092,B://:9092"}, "different port"),
    ({"listeners": "CUSTOM://:9092"}, "no security protocol"),
    ({"listener.security.protocol.map": "CUSTOM:TLS"}, "NAME:PROTOCOL"),
    ({"advertised.listeners": "SSL://x:1"}, "SSL, not in listeners"),
    ({"inter.broker.listener.name": "SSL"}, "not in listeners"),
    ({"listener.name.ssl.ssl.client.auth": "always"}, "String must be one of"),
    ({"listener.name.ssl.log.retention.ms": "1"}, "not one strom knows"),
    ({"sasl.enabled.mechanisms": "GSSAPI"}, "String must be one of"),
])
def test_bad_listener_settings(overrides, message):
    with pytest.raises(BrokerConfigError, match=message):
        load_broker_config(None, {}, overrides)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"overrides": {"num.partitions": "zero"}}, "The value 'zero' of num.partitions from the command line is invalid"),
        ({"overrides": {"num.partition": "1"}}, "The broker config 'num.partition' from the command line is not one strom knows"),
        ({"env": {"STROM_NUM_PARTITION": "1"}}, "The environment variable STROM_NUM_PARTITION names no broker config"),
        ({"overrides": {"num.partitions": "0"}}, "Value must be at least 1"),
        ({"overrides": {"listeners": "nonsense"}}, "listeners"),
    ],
)
def test_bad_settings_are_refused_with_a_sentence(source, message):
    with pytest.raises(BrokerConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        load_broker_config(None, source.get("env", {}), source.get("overrides", {}))


def test_bad_toml_names_the_file(tmp_path):
    path = write(tmp_path, "num.partitions = \n")
    with pytest.raises(BrokerConfigError, match="could not be read"):
        load_broker_config(path, {}, {})
    with pytest.raises(BrokerConfigError, match="does not exist"):
        load_broker_config(tmp_path / "missing.toml", {}, {})
    path = write(tmp_path, "num.partitions = 0\n")
    with pytest.raises(BrokerConfigError, match="in the config file"):
        load_broker_config(path, {}, {})
