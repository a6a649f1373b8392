"""Broker config loading: TOML < STROM_* environment < flags, with checked values."""

from __future__ import annotations

from pathlib import Path

import pytest

from strom.metadata.broker_config import BrokerConfigError, load_broker_config, parse_listener


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
    assert parse_listener("[::1]:9092") == ("::1", 9092)
    with pytest.raises(ValueError):
        parse_listener("SSL://host:9093")


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
