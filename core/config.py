"""Configuration: one TOML file into frozen dataclasses, every key with a default.

Owns: the names, types, defaults and limits of every setting (DESIGN §7), and the one clear
error a bad file produces: ``ConfigError("radius.clients[2].secret: must not be empty")``.

Invariants: an unknown key is an error, never ignored (unlike hypercorn's ``from_mapping``); a
loaded ``Config`` is immutable.

Must not: import asyncio, structlog or any runtime module.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Final, TypeVar

_T = TypeVar("_T")

#: RFC 2865 prefers 16 octets; the BlastRADIUS draft says to warn at 12 or fewer.
SHORT_SECRET: Final = 12


class ConfigError(Exception):
    """The configuration cannot be used; the message starts with the key path."""


@dataclass(frozen=True, slots=True)
class Client:
    name: str
    address: str
    secret: str
    require_message_authenticator: bool = True
    dae_port: int = 3799

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_network(self.address, strict=False)


@dataclass(frozen=True, slots=True)
class Radius:
    listen: str = "127.0.0.1"
    auth_port: int = 1812
    acct_port: int = 1813
    reject_delay: float = 1.0
    reply_cache_ttl: float = 10.0
    imsi_from_user_name: bool = False
    status_server: bool = True
    receive_buffer: int = 4 * 1024 * 1024
    #: SO_REUSEPORT: several simgate processes on one port, the kernel spreading the clients
    #: over them (each process its own data_dir: bench/load.py --workers)
    reuse_port: bool = False
    clients: tuple[Client, ...] = ()


@dataclass(frozen=True, slots=True)
class Store:
    data_dir: str = "var/data"
    fsync: str = "batch"  # "batch": group commit (many writes share one fsync); "always"
    compact_after_records: int = 100_000  # journal records since the snapshot
    compact_after_seconds: float = 3600.0  # age of the oldest record not in a snapshot
    # MB/s a compaction writes at most; 0: no limit. Its memory traffic on the other CPU slows
    # the decisions (the two CPUs share caches): in turn with read-only, 25 MB/s left them
    # 0.974-0.995 of their rate, 50 MB/s 0.968, 100 MB/s 0.954 (bench/writes.py). The price: a
    # compaction takes ~11 s at 1M SIMs, ~2 min at 10M.
    compaction_rate_mb: float = 25.0
    # CPUs for the journal's durable writes and the compaction child; (): the server's own
    io_cpus: tuple[int, ...] = ()
    # fsync = "batch": the least time between the starts of two syncs; writes that come
    # meanwhile share the next one (a lone write waits for nothing). 0: the next sync starts
    # as soon as the last one ends. None (not set): 10 ms, or 20 ms when the syncs share the
    # decisions' only CPU (core.service.commit.sync_interval says why and what was measured).
    # The price: a write among others waits up to this long, and one connection writing one
    # at a time gets ~1/interval writes a second.
    sync_interval: float | None = None


@dataclass(frozen=True, slots=True)
class Http:
    listen: str = "127.0.0.1"
    port: int = 8080
    token: str = ""


@dataclass(frozen=True, slots=True)
class Log:
    level: str = "info"
    format: str = "auto"  # "json", "console", or "auto" (console on a terminal)
    drop_interval: float = 10.0  # seconds between two log lines about drops of one reason


@dataclass(frozen=True, slots=True)
class Config:
    radius: Radius = field(default_factory=Radius)
    store: Store = field(default_factory=Store)
    http: Http = field(default_factory=Http)
    log: Log = field(default_factory=Log)
    warnings: tuple[str, ...] = ()


_LEVELS: Final = ("debug", "info", "warning", "error")
_FORMATS: Final = ("auto", "json", "console")
_FSYNC: Final = ("batch", "always")


def load(path: str | Path) -> Config:
    """Read and check a TOML configuration file.

    Raises:
        ConfigError: the file is missing, is not TOML, or a key is unknown or bad.
    """
    try:
        with open(path, "rb") as handle:
            document = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    return from_mapping(document)


def from_mapping(document: dict[str, Any]) -> Config:
    """Build a ``Config`` from a parsed document (what ``load`` does after reading).

    Raises:
        ConfigError: a key is unknown or its value is bad.
    """
    _no_unknown_keys(document, {"radius", "store", "http", "log"}, "")
    radius_doc = dict(_table(document, "radius", ""))
    clients_doc = radius_doc.pop("clients", [])
    if not isinstance(clients_doc, list):
        raise ConfigError("radius.clients: must be an array of tables ([[radius.clients]])")
    clients = tuple(_client(item, f"radius.clients[{i}]") for i, item in enumerate(clients_doc))
    _unique_names(clients)
    radius = _section(Radius, radius_doc, "radius", clients=clients)
    _check_radius(radius)
    http = _section(Http, _table(document, "http", ""), "http")
    _check_port(http.port, "http.port")
    log = _section(Log, _table(document, "log", ""), "log")
    if log.level not in _LEVELS:
        raise ConfigError(f"log.level: must be one of {', '.join(_LEVELS)}, not {log.level!r}")
    if log.format not in _FORMATS:
        raise ConfigError(f"log.format: must be one of {', '.join(_FORMATS)}, not {log.format!r}")
    store_doc = dict(_table(document, "store", ""))
    interval = store_doc.pop("sync_interval", None)  # absent: chosen at start-up
    if interval is not None:
        interval = _typed(interval, 0.0, "store.sync_interval")
    store = _section(Store, store_doc, "store", sync_interval=interval)
    if not store.data_dir:
        raise ConfigError("store.data_dir: must not be empty")
    if store.fsync not in _FSYNC:
        raise ConfigError(f"store.fsync: must be one of {', '.join(_FSYNC)}, not {store.fsync!r}")
    if store.compact_after_records < 1:
        raise ConfigError("store.compact_after_records: must be at least 1")
    if store.compact_after_seconds <= 0:
        raise ConfigError("store.compact_after_seconds: must be more than 0")
    if not store.compaction_rate_mb >= 0:  # NaN too
        raise ConfigError("store.compaction_rate_mb: must be 0 (no limit) or more")
    if store.sync_interval is not None and not 0 <= store.sync_interval <= 1.0:  # NaN too
        raise ConfigError("store.sync_interval: must be between 0 and 1 second")
    cpus = os.cpu_count() or 1
    for cpu in store.io_cpus:
        if not 0 <= cpu < cpus:
            raise ConfigError(f"store.io_cpus: CPU {cpu} is not one of this machine's 0-{cpus - 1}")
    warnings = tuple(
        f"radius.clients[{i}].secret: {len(c.secret.encode())} octets is short; "
        "use 24 or more random octets (BlastRADIUS guidance)"
        for i, c in enumerate(clients)
        if len(c.secret.encode()) <= SHORT_SECRET
    )
    return Config(radius, store, http, log, warnings)


def _table(document: dict[str, Any], key: str, prefix: str) -> dict[str, Any]:
    value = document.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{prefix}{key}: must be a table")
    return value


def _no_unknown_keys(document: dict[str, Any], known: set[str], prefix: str) -> None:
    for key in document:
        if key not in known:
            where = f"{prefix}.{key}" if prefix else key
            raise ConfigError(f"{where}: unknown key")


def _section(cls: type[_T], document: dict[str, Any], prefix: str, **given: Any) -> _T:
    known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    _no_unknown_keys(document, set(known) - set(given), prefix)
    values: dict[str, Any] = dict(given)
    for key, value in document.items():
        default = known[key].default
        values[key] = _typed(value, default, f"{prefix}.{key}")
    return cls(**values)


def _typed(value: Any, default: Any, where: str) -> Any:
    if isinstance(default, tuple):  # a list of integers
        if not isinstance(value, list) or any(
            isinstance(item, bool) or not isinstance(item, int) for item in value
        ):
            raise ConfigError(f"{where}: must be a list of integers, not {value!r}")
        return tuple(value)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: must be true or false, not {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: must be a number, not {value!r}")
        return float(value)
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: must be an integer, not {value!r}")
        return value
    if not isinstance(value, str):
        raise ConfigError(f"{where}: must be a string, not {value!r}")
    return value


def _client(item: Any, where: str) -> Client:
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: must be a table")
    for required in ("name", "address", "secret"):
        if required not in item:
            raise ConfigError(f"{where}.{required}: missing (every client needs it)")
    client = _section(Client, item, where)
    if not client.name:
        raise ConfigError(f"{where}.name: must not be empty")
    if not client.secret:
        raise ConfigError(f"{where}.secret: must not be empty (RFC 2865 §3)")
    try:
        client.network  # noqa: B018 - parsing is the check
    except ValueError:
        raise ConfigError(
            f"{where}.address: {client.address!r} is not an address or CIDR"
        ) from None
    _check_port(client.dae_port, f"{where}.dae_port")
    return client


def _unique_names(clients: tuple[Client, ...]) -> None:
    seen: set[str] = set()
    for i, client in enumerate(clients):
        if client.name in seen:
            raise ConfigError(f"radius.clients[{i}].name: {client.name!r} is used twice")
        seen.add(client.name)


def _check_radius(radius: Radius) -> None:
    _check_port(radius.auth_port, "radius.auth_port")
    _check_port(radius.acct_port, "radius.acct_port")
    try:
        ipaddress.ip_address(radius.listen)
    except ValueError:
        raise ConfigError(f"radius.listen: {radius.listen!r} is not an IP address") from None
    if not 0 <= radius.reject_delay <= 10:
        raise ConfigError("radius.reject_delay: must be between 0 and 10 seconds")
    if not 5 <= radius.reply_cache_ttl <= 30:
        raise ConfigError("radius.reply_cache_ttl: must be between 5 and 30 seconds (RFC 5080)")
    if radius.receive_buffer < 65536:
        raise ConfigError("radius.receive_buffer: must be at least 65536 octets")


def _check_port(port: int, where: str) -> None:
    if not 0 <= port <= 65535:
        raise ConfigError(f"{where}: {port} is not a port (0-65535; 0 picks a free one)")
