"""core.config: defaults, one clear error per bad key (starting with its path), and files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.config import Client, Config, ConfigError, from_mapping, load

SHIPPED = Path(__file__).resolve().parents[1] / "config" / "simgate.toml"
SECRET = "a-long-enough-shared-secret"


def client(**changes: Any) -> dict[str, Any]:
    """A valid client table, with some keys changed."""
    return {"name": "pgw", "address": "192.0.2.0/24", "secret": SECRET, **changes}


def with_clients(*clients: dict[str, Any]) -> dict[str, Any]:
    return {"radius": {"clients": list(clients)}}


# --- defaults -----------------------------------------------------------------------------------


def test_empty_document_gives_the_defaults() -> None:
    config = from_mapping({})

    assert config == Config()
    assert config.radius.listen == "127.0.0.1"
    assert (config.radius.auth_port, config.radius.acct_port) == (1812, 1813)
    assert config.radius.reject_delay == 1.0
    assert config.radius.reply_cache_ttl == 10.0
    assert config.radius.status_server is True
    assert config.radius.imsi_from_user_name is False
    assert config.radius.clients == ()
    assert config.store.data_dir == "var/data"
    assert config.store.sync_interval is None  # chosen at start-up by the CPUs
    assert (config.http.listen, config.http.port, config.http.token) == ("127.0.0.1", 8080, "")
    assert (config.log.level, config.log.format) == ("info", "auto")
    assert config.warnings == ()


def test_a_sync_interval_given_is_kept() -> None:
    assert from_mapping({"store": {"sync_interval": 0}}).store.sync_interval == 0.0
    assert from_mapping({"store": {"sync_interval": 0.03}}).store.sync_interval == 0.03


def test_client_defaults() -> None:
    config = from_mapping(with_clients(client()))

    (only,) = config.radius.clients
    assert only == Client("pgw", "192.0.2.0/24", SECRET)
    assert only.require_message_authenticator is True
    assert only.dae_port == 3799
    assert str(only.network) == "192.0.2.0/24"


def test_single_address_is_a_host_network() -> None:
    config = from_mapping(with_clients(client(address="192.0.2.7")))

    assert str(config.radius.clients[0].network) == "192.0.2.7/32"


def test_integer_is_taken_for_a_float_setting() -> None:
    config = from_mapping({"radius": {"reject_delay": 0}})

    assert config.radius.reject_delay == 0.0
    assert isinstance(config.radius.reject_delay, float)


def test_config_is_immutable() -> None:
    config = from_mapping({})

    with pytest.raises(AttributeError):
        config.radius.auth_port = 1  # type: ignore[misc]


# --- bad keys: the message starts with the key path ---------------------------------------------

BAD = [
    pytest.param({"radious": {}}, "radious: unknown key", id="unknown top-level key"),
    pytest.param({"warnings": []}, "warnings: unknown key", id="warnings is not a key"),
    pytest.param({"radius": {"port": 1812}}, "radius.port: unknown key", id="unknown radius key"),
    pytest.param({"log": {"colour": True}}, "log.colour: unknown key", id="unknown log key"),
    pytest.param({"radius": []}, "radius: must be a table", id="radius not a table"),
    pytest.param(
        with_clients(client(), client(name="other", secret="")),
        "radius.clients[1].secret: must not be empty",
        id="empty secret",
    ),
    pytest.param(
        with_clients(client(address="192.0.2.300/24")),
        "radius.clients[0].address: ",
        id="address not a CIDR",
    ),
    pytest.param(
        with_clients(client(address="pgw.example")),
        "radius.clients[0].address: ",
        id="address a host name",
    ),
    pytest.param(
        with_clients(client(shared_secret="x")),
        "radius.clients[0].shared_secret: unknown key",
        id="unknown client key",
    ),
    pytest.param(
        {"radius": {"clients": [{"name": "pgw", "address": "192.0.2.1"}]}},
        "radius.clients[0].secret: missing",
        id="client without secret",
    ),
    pytest.param(
        with_clients(client(name="")), "radius.clients[0].name: must not be empty", id="empty name"
    ),
    pytest.param(
        with_clients(client(secret=12345678901234567)),
        "radius.clients[0].secret: must be a string",
        id="secret not a string",
    ),
    pytest.param(
        with_clients(client(require_message_authenticator="yes")),
        "radius.clients[0].require_message_authenticator: must be true or false",
        id="flag not a boolean",
    ),
    pytest.param(
        with_clients(client(dae_port=65536)),
        "radius.clients[0].dae_port: 65536 is not a port",
        id="dae port 65536",
    ),
    pytest.param(
        with_clients(client(), client(address="198.51.100.1")),
        "radius.clients[1].name: 'pgw' is used twice",
        id="duplicate client names",
    ),
    pytest.param(
        {"radius": {"clients": {"name": "pgw"}}},
        "radius.clients: must be an array of tables",
        id="clients not an array",
    ),
    pytest.param(
        {"radius": {"clients": ["pgw"]}}, "radius.clients[0]: must be a table", id="client a string"
    ),
    pytest.param(
        {"radius": {"auth_port": 70000}},
        "radius.auth_port: 70000 is not a port",
        id="auth port 70000",
    ),
    pytest.param(
        {"radius": {"acct_port": -1}}, "radius.acct_port: -1 is not a port", id="acct port -1"
    ),
    pytest.param(
        {"radius": {"auth_port": 1812.0}},
        "radius.auth_port: must be an integer",
        id="port a float",
    ),
    pytest.param(
        {"radius": {"auth_port": True}}, "radius.auth_port: must be an integer", id="port a boolean"
    ),
    pytest.param(
        {"radius": {"reject_delay": "x"}},
        "radius.reject_delay: must be a number",
        id="reject delay a string",
    ),
    pytest.param(
        {"radius": {"reject_delay": 11}},
        "radius.reject_delay: must be between 0 and 10",
        id="reject delay 11",
    ),
    pytest.param(
        {"radius": {"reject_delay": float("nan")}},
        "radius.reject_delay: must be between 0 and 10",
        id="reject delay nan",
    ),
    pytest.param(
        {"radius": {"reply_cache_ttl": 31}},
        "radius.reply_cache_ttl: must be between 5 and 30",
        id="reply cache ttl 31",
    ),
    pytest.param(
        {"radius": {"listen": "localhost"}},
        "radius.listen: 'localhost' is not an IP address",
        id="listen a host name",
    ),
    pytest.param(
        {"radius": {"receive_buffer": 1024}},
        "radius.receive_buffer: must be at least 65536",
        id="receive buffer 1024",
    ),
    pytest.param({"http": {"port": 65536}}, "http.port: 65536 is not a port", id="http port"),
    pytest.param({"log": {"level": "loud"}}, "log.level: must be one of", id="log level loud"),
    pytest.param({"log": {"format": "xml"}}, "log.format: must be one of", id="log format xml"),
    pytest.param({"store": {"data_dir": ""}}, "store.data_dir: must not be empty", id="data dir"),
    pytest.param(
        {"store": {"compaction_rate_mb": -1}},
        "store.compaction_rate_mb: must be 0 (no limit) or more",
        id="compaction rate negative",
    ),
    pytest.param(
        {"store": {"compaction_rate_mb": "fast"}},
        "store.compaction_rate_mb: must be a number",
        id="compaction rate not a number",
    ),
    pytest.param(
        {"store": {"sync_interval": -0.001}},
        "store.sync_interval: must be between 0 and 1 second",
        id="sync interval negative",
    ),
    pytest.param(
        {"store": {"sync_interval": 2}},
        "store.sync_interval: must be between 0 and 1 second",
        id="sync interval too long",
    ),
    pytest.param(
        {"store": {"sync_interval": "2ms"}},
        "store.sync_interval: must be a number",
        id="sync interval not a number",
    ),
    pytest.param(
        {"store": {"io_cpus": 1}}, "store.io_cpus: must be a list of integers", id="io cpus int"
    ),
    pytest.param(
        {"store": {"io_cpus": [0, "1"]}},
        "store.io_cpus: must be a list of integers",
        id="io cpus text",
    ),
    pytest.param(
        {"store": {"io_cpus": [True]}},
        "store.io_cpus: must be a list of integers",
        id="io cpus bool",
    ),
    pytest.param(
        {"store": {"io_cpus": [4096]}},
        "store.io_cpus: CPU 4096 is not one of this machine's",
        id="io cpus beyond the machine",
    ),
    pytest.param(
        {"store": {"io_cpus": [-1]}},
        "store.io_cpus: CPU -1 is not one of this machine's",
        id="io cpus negative",
    ),
]


def test_io_cpus_is_read_as_a_tuple() -> None:
    assert from_mapping({"store": {"io_cpus": [0]}}).store.io_cpus == (0,)
    assert from_mapping({}).store.io_cpus == ()


@pytest.mark.parametrize(("document", "start"), BAD)
def test_bad_key_is_refused_naming_its_path(document: dict[str, Any], start: str) -> None:
    with pytest.raises(ConfigError) as caught:
        from_mapping(document)

    assert str(caught.value).startswith(start)


# --- warnings -----------------------------------------------------------------------------------


def test_short_secret_gives_a_warning_naming_the_client() -> None:
    config = from_mapping(with_clients(client(), client(name="lab", secret="123456789012")))

    (warning,) = config.warnings
    assert warning.startswith("radius.clients[1].secret: 12 octets is short")


def test_secret_of_13_octets_gives_no_warning() -> None:
    assert from_mapping(with_clients(client(secret="1234567890123"))).warnings == ()


def test_secret_length_is_counted_in_octets() -> None:
    # Characters of two UTF-8 octets each: six are 12 octets (short), seven are 14 (not).
    short = from_mapping(with_clients(client(secret="\u00e9" * 6)))
    enough = from_mapping(with_clients(client(secret="\u00e9" * 7)))

    assert short.warnings[0].startswith("radius.clients[0].secret: 12 octets")
    assert enough.warnings == ()


# --- files --------------------------------------------------------------------------------------


def test_shipped_configuration_loads() -> None:
    config = load(SHIPPED)

    assert config.radius.auth_port == 1812
    assert [c.name for c in config.radius.clients] == ["radios"]
    assert config.radius.clients[0].require_message_authenticator is True
    assert config.warnings == ()


def test_file_not_toml_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "simgate.toml"
    path.write_text("[radius\nauth_port = 1812\n")

    with pytest.raises(ConfigError, match="not valid TOML") as caught:
        load(path)

    assert str(caught.value).startswith(f"{path}: ")


def test_missing_file_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"

    with pytest.raises(ConfigError, match="file not found") as caught:
        load(path)

    assert str(caught.value).startswith(f"{path}: ")


def test_bad_key_in_a_file_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "simgate.toml"
    path.write_text(
        '[[radius.clients]]\nname = "a"\naddress = "10.0.0.0/8"\nsecret = "0123456789abcdef"\n'
        '[[radius.clients]]\nname = "b"\naddress = "10.1.0.0/16"\nsecret = ""\n'
    )

    with pytest.raises(ConfigError, match=r"^radius\.clients\[1\]\.secret: must not be empty"):
        load(path)
