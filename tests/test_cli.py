"""The ``simgate`` command as an operator runs it: import, serve, probe, stop with SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.subscribers import SIMS

SIMGATE = [sys.executable, "-m", "core.cli"]
ROOT = Path(__file__).resolve().parents[1]
SECRET = "cli-test-secret-0123456789"


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def write_config(
    directory: Path, *, token: str = "", **radius: object
) -> tuple[Path, dict[str, int]]:
    """Write a config with free ports; ``radius`` keys go to [radius], ``token`` to [http]."""
    ports = {"auth": free_port(), "acct": free_port(), "http": free_port(socket.SOCK_STREAM)}
    extra = "".join(f"{key} = {json.dumps(value)}\n" for key, value in radius.items())
    config = directory / "simgate.toml"
    config.write_text(
        f"""
[radius]
listen = "127.0.0.1"
auth_port = {ports["auth"]}
acct_port = {ports["acct"]}
{extra}
[[radius.clients]]
name = "radios"
address = "127.0.0.0/8"
secret = "{SECRET}"

[store]
data_dir = "{directory / "data"}"

[http]
port = {ports["http"]}
token = "{token}"

[log]
format = "json"
"""
    )
    return config, ports


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SIMGATE, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], dict[str, int]]]:
    """``simgate import`` the shared SIMs, then ``simgate serve`` until the test ends."""
    process, ports = serve(tmp_path)
    try:
        wait_ready(process)
        yield process, ports
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


def serve(
    directory: Path, confine: Callable[[], None] | None = None
) -> tuple[subprocess.Popen[str], dict[str, int]]:
    """``simgate import`` the shared SIMs into ``directory``, then start ``simgate serve``
    (``confine`` runs in the child before exec: sched_setaffinity, say)."""
    config, ports = write_config(directory, reject_delay=0.0)
    data = directory / "sims.jsonl"
    data.write_text("".join(json.dumps(line) + "\n" for line in SIMS))
    imported = run("import", "--config", str(config), str(data))
    assert imported.returncode == 0, imported.stderr
    assert "imported 13 SIMs" in imported.stdout
    process = subprocess.Popen(
        [*SIMGATE, "serve", "--config", str(config)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=confine,
    )
    return process, ports


def wait_ready(process: subprocess.Popen[str]) -> dict[str, object]:
    assert process.stderr is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            raise AssertionError(f"server exited: {process.wait(5)}")
        event = json.loads(line)
        if event.get("event") == "ready":
            return dict(event)
    raise AssertionError("server not ready in 30 s")


def probe(ports: dict[str, int], *args: str) -> subprocess.CompletedProcess[str]:
    return run(
        "probe",
        "--port",
        str(ports["auth"]),
        "--secret",
        SECRET,
        "--timeout",
        "1",
        "--attempts",
        "1",
        *args,
    )


def test_probe_exit_codes_follow_the_verdict(
    served: tuple[subprocess.Popen[str], dict[str, int]],
) -> None:
    _, ports = served
    accept = probe(ports, "440100000000003", "3538792342526301")
    assert (accept.returncode, accept.stdout.split()[0]) == (0, "accept")
    reject = probe(ports, "440100000000003", "490154203237518")
    assert reject.returncode == 1
    assert "reason=imei-mismatch" in reject.stdout
    dropped = probe(ports, "440100000000003", "--json", "--no-message-authenticator")
    assert dropped.returncode == 2  # dropped (Message-Authenticator required): no answer
    assert json.loads(dropped.stdout)["verdict"] == "no-answer"


def test_sigterm_stops_the_server_cleanly(
    served: tuple[subprocess.Popen[str], dict[str, int]],
) -> None:
    process, _ = served
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=15) == 0
    _, stderr = process.communicate(timeout=5)
    assert '"event": "stopped"' in stderr


@pytest.mark.parametrize("pinned", [False, True], ids=["free", "one-cpu"])
def test_the_server_chooses_its_sync_interval_by_its_cpus(tmp_path: Path, pinned: bool) -> None:
    """A server confined to one CPU (taskset, a cpuset) spaces its journal syncs further."""
    cpus = os.sched_getaffinity(0)
    if not pinned and len(cpus) < 2:
        pytest.skip("one CPU: every server here is confined to it")
    process, _ = serve(tmp_path, (lambda: os.sched_setaffinity(0, {min(cpus)})) if pinned else None)
    try:
        ready = wait_ready(process)
        assert ready["sync_interval"] == (0.02 if pinned else 0.01)
    finally:
        process.kill()
        process.communicate(timeout=10)


def test_bad_config_stops_startup_naming_the_key(tmp_path: Path) -> None:
    config, _ = write_config(tmp_path, reject_delay="soon")
    result = run("serve", "--config", str(config))
    assert result.returncode == 2
    assert "radius.reject_delay" in result.stderr


def test_unknown_config_key_stops_startup(tmp_path: Path) -> None:
    config, _ = write_config(tmp_path, reject_dealy=1.0)
    result = run("serve", "--config", str(config))
    assert result.returncode == 2
    assert "radius.reject_dealy: unknown key" in result.stderr


def test_corrupt_only_snapshot_refuses_to_start(tmp_path: Path) -> None:
    config, _ = write_config(tmp_path)
    data = tmp_path / "sims.jsonl"
    data.write_text("".join(json.dumps(line) + "\n" for line in SIMS))
    assert run("import", "--config", str(config), str(data)).returncode == 0
    (snapshot,) = (tmp_path / "data" / "snapshots").glob("*.sgs")
    raw = bytearray(snapshot.read_bytes())
    raw[-100] ^= 0xFF  # a flipped bit inside the last section
    snapshot.write_bytes(bytes(raw))
    result = run("serve", "--config", str(config))
    assert result.returncode == 3
    assert snapshot.name in result.stderr


def test_import_reports_bad_lines_and_writes_nothing(tmp_path: Path) -> None:
    config, _ = write_config(tmp_path)
    data = tmp_path / "bad.jsonl"
    data.write_text(
        '{"simId": "1", "imsi": "440100000000001"}\n{"simId": "2", "imsi": "44010000000000X"}\n'
    )
    result = run("import", "--config", str(config), str(data))
    assert result.returncode == 2
    assert "line 2" in result.stderr
    assert "imsi" in result.stderr
    assert not list((tmp_path / "data").glob("snapshots/*.sgs"))


def test_help_lists_the_commands() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("serve", "import", "probe", "bench"):
        assert command in result.stdout


def test_bench_runs_a_named_benchmark_and_passes_its_exit_code() -> None:
    # the hot path on the 10k set for half a second: the whole chain from `simgate bench` to a
    # verified result line (micro.py checks every verdict and exits 1 on a wrong one)
    ran = run(
        "bench", "micro", "--size", "10k", "--packets", "2000", "--seconds", "0.5", "--no-write"
    )
    assert ran.returncode == 0, ran.stderr
    assert "bench/micro.py --size 10k --packets 2000" in ran.stdout
    assert "decisions/s on one core" in ran.stdout
    refused = run("bench", "micro", "--size", "huge")
    assert refused.returncode == 2
    assert "invalid choice: 'huge'" in refused.stderr


def test_reimport_supersedes_the_journal(tmp_path: Path) -> None:
    from core.store.commands import SetStatus, UnsetLock
    from core.store.journal_writer import JournalWriter
    from core.store.records import Status
    from core.store.recovery import open_live

    config, _ = write_config(tmp_path)
    data = tmp_path / "sims.jsonl"
    data.write_text("".join(json.dumps(line) + "\n" for line in SIMS))
    assert run("import", "--config", str(config), str(data)).returncode == 0
    with JournalWriter(tmp_path / "data", 2) as journal:  # writes made after the first import
        journal.append(UnsetLock("1").to_json())
        journal.append(SetStatus("1", Status.SUSPENDED).to_json())
        journal.sync()
    assert run("import", "--config", str(config), str(data)).returncode == 0
    live, writer, report = open_live(tmp_path / "data")
    try:
        assert report.replayed == 0  # the journal's record is older than the new snapshot
        sim = live.sim("1")
        assert sim is not None
        assert sim.status == Status.ACTIVE
    finally:
        writer.close()
        live.close()
