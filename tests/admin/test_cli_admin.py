"""``simgate sims|lock|groups|events|snapshot`` as an operator runs them: each command is a
subprocess talking to a ``simgate serve`` subprocess over HTTP, as in a terminal or a script.

One server serves the whole module; each test works on SIMs of its own.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from core.store.format import MAGIC
from tests.subscribers import LOCKED_IMEI, SIMS
from tests.test_cli import (
    ROOT,
    SIMGATE,
    free_port,
    probe,
    run,
    wait_ready,
    write_config,
)

TOKEN = "cli-admin-token-5d1e"
CHAP_PASSWORD = "cli-Chap-Pass-38"  # looked for in every output and log line
OTHER_IMEI = "490154203237518"
SAME_IMEISV = "3538792342526301"


@dataclass
class Served:
    config: Path
    ports: dict[str, int]
    process: subprocess.Popen[str]
    log: list[str] = field(default_factory=list)  # the server's log lines after "ready"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``simgate import`` the shared SIMs, then ``simgate serve`` with an admin token."""
    directory = tmp_path_factory.mktemp("cli-admin")
    config, ports = write_config(directory, token=TOKEN, reject_delay=0.0)
    data = directory / "sims.jsonl"
    data.write_text("".join(json.dumps(line) + "\n" for line in SIMS))
    imported = run("import", "--config", str(config), str(data))
    assert imported.returncode == 0, imported.stderr
    process = subprocess.Popen(
        [*SIMGATE, "serve", "--config", str(config)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    result = Served(config, ports, process)
    try:
        wait_ready(process)
        reader = threading.Thread(target=_drain, args=(process, result.log), daemon=True)
        reader.start()
        yield result
    finally:
        if process.poll() is None:
            process.terminate()
        process.wait(timeout=15)
        assert process.stderr is not None
        process.stderr.close()


def _drain(process: subprocess.Popen[str], log: list[str]) -> None:
    """Keep the server's log, so that it never blocks on a full pipe."""
    assert process.stderr is not None
    for line in process.stderr:
        log.append(line)  # noqa: PERF402 - each line as it comes, while the server runs


def simgate(
    served: Served, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run an admin command; the API's URL and token come from the server's config file."""
    command = [*SIMGATE, *args]
    if "--api" not in args:
        command += ["--config", str(served.config)]
    return subprocess.run(
        command,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, **(env or {})},
    )


def table(output: str) -> list[list[str]]:
    """The rows of a human table, cells split on runs of two or more spaces."""
    return [re.split(r" {2,}", line.strip()) for line in output.splitlines()]


def create(served: Served, sim_id: str, imsi: str) -> None:
    created = simgate(served, "sims", "create", json.dumps({"simId": sim_id, "imsi": imsi}))
    assert created.returncode == 0, created.stderr


def verdict(served: Served, imsi: str, *imei: str) -> str:
    """``simgate probe``'s first word and reason: "accept" or "reject reason=..."."""
    words = probe(served.ports, imsi, *imei).stdout.split()
    return " ".join(word for word in words[:2] if not word.startswith("latency"))


# -- sims -----------------------------------------------------------------------------------------


def test_sims_list_prints_a_table_and_json(served: Served) -> None:
    listed = simgate(served, "sims", "list")
    assert listed.returncode == 0, listed.stderr
    rows = table(listed.stdout)
    assert rows[0] == ["SIM ID", "IMSI", "STATUS", "GROUP", "IMEI LOCK", "SESSION"]
    by_id = {row[0]: row for row in rows[1:]}
    assert by_id["2"] == [
        "2",
        "440100000000002",
        "active",
        f"{LOCKED_IMEI} (allow unreported)",
        "offline",
    ]
    assert by_id["3"] == ["3", "440100000000003", "active", LOCKED_IMEI, "offline"]
    assert by_id["9"] == ["9", "440100000000009", "active", "chap", "offline"]
    assert by_id["8"][2] == "terminated"
    page = simgate(served, "sims", "list", "--json", "--limit", "2", "--offset", "1")
    assert page.returncode == 0
    body = json.loads(page.stdout)
    assert [sim["simId"] for sim in body["sims"]] == ["2", "3"]
    assert body["total"] >= 13


def test_sims_get_prints_one_sim(served: Served) -> None:
    shown = simgate(served, "sims", "get", "13")
    assert shown.returncode == 0
    assert table(shown.stdout)[1] == ["13", "440100000000013", "active", LOCKED_IMEI, "offline"]
    body = json.loads(simgate(served, "sims", "get", "13", "--json").stdout)
    assert body["simId"] == "13"
    assert body["imeiLock"] == {"imei": LOCKED_IMEI, "allowUnreported": False}
    assert body["virtualSubscribers"][0]["imsi"] == "999990000000003"


def test_unknown_sim_exits_4(served: Served) -> None:
    for args in (
        ("sims", "get", "no-such-sim"),
        ("sims", "deactivate", "no-such-sim"),
        ("lock", "set", "no-such-sim", LOCKED_IMEI),
        ("lock", "unset", "no-such-sim"),
        ("events", "no-such-sim"),
    ):
        result = simgate(served, *args)
        assert result.returncode == 4, args
        assert "404" in result.stderr and "no-such-sim" in result.stderr
        assert result.stdout == ""


def test_sims_create_from_json_and_file(served: Served, tmp_path: Path) -> None:
    created = simgate(served, "sims", "create", '{"simId": "cli-new", "imsi": "440100000000301"}')
    assert created.returncode == 0, created.stderr
    assert table(created.stdout)[1] == ["cli-new", "440100000000301", "active", "offline"]
    document = tmp_path / "sim.json"
    document.write_text(json.dumps({"simId": "cli-file", "imsi": "440100000000302"}))
    from_file = simgate(served, "sims", "create", f"@{document}", "--json")
    assert from_file.returncode == 0, from_file.stderr
    assert json.loads(from_file.stdout)["imsi"] == "440100000000302"
    assert verdict(served, "440100000000302") == "accept"
    duplicate = simgate(served, "sims", "create", '{"simId": "cli-new", "imsi": "440100000000303"}')
    assert duplicate.returncode == 1
    assert "400" in duplicate.stderr and "simId" in duplicate.stderr
    not_json = simgate(served, "sims", "create", "{simId")
    assert not_json.returncode == 2
    assert "not JSON" in not_json.stderr


def test_status_commands_change_the_verdict(served: Served) -> None:
    create(served, "cli-status", "440100000000311")
    deactivated = simgate(served, "sims", "deactivate", "cli-status")
    assert deactivated.returncode == 0
    assert table(deactivated.stdout)[1][2] == "inactive"
    assert verdict(served, "440100000000311") == "reject reason=sim-not-active"
    for command, status in (("standby", "standby"), ("suspend", "suspended")):
        changed = simgate(served, "sims", command, "cli-status", "--json")
        assert json.loads(changed.stdout)["status"] == status
    assert simgate(served, "sims", "activate", "cli-status").returncode == 0
    assert verdict(served, "440100000000311") == "accept"
    assert simgate(served, "sims", "terminate", "cli-status").returncode == 0
    again = simgate(served, "sims", "activate", "cli-status")
    assert again.returncode == 1
    assert "terminated" in again.stderr


# -- lock -----------------------------------------------------------------------------------------


def test_lock_set_with_imei_and_unset(served: Served) -> None:
    create(served, "cli-lock", "440100000000321")
    locked = simgate(served, "lock", "set", "cli-lock", LOCKED_IMEI)
    assert locked.returncode == 0, locked.stderr
    assert table(locked.stdout)[1] == [
        "cli-lock",
        "440100000000321",
        "active",
        LOCKED_IMEI,
        "offline",
    ]
    assert verdict(served, "440100000000321", OTHER_IMEI) == "reject reason=imei-mismatch"
    assert verdict(served, "440100000000321", SAME_IMEISV) == "accept"
    allowing = simgate(
        served, "lock", "set", "cli-lock", LOCKED_IMEI, "--allow-unreported", "--json"
    )
    assert json.loads(allowing.stdout)["imeiLock"] == {"imei": LOCKED_IMEI, "allowUnreported": True}
    assert verdict(served, "440100000000321") == "accept"
    unset = simgate(served, "lock", "unset", "cli-lock")
    assert unset.returncode == 0
    assert table(unset.stdout)[1] == ["cli-lock", "440100000000321", "active", "online"]
    assert verdict(served, "440100000000321", OTHER_IMEI) == "accept"


def test_lock_set_takes_the_anonymous_suffix(served: Served) -> None:
    create(served, "cli-anonymous", "440100000000381")
    locked = simgate(served, "lock", "set", "cli-anonymous", f"{LOCKED_IMEI}|ANONYMOUS")
    assert locked.returncode == 0, locked.stderr
    assert table(locked.stdout)[1][3] == f"{LOCKED_IMEI} (allow unreported)"
    assert verdict(served, "440100000000381") == "accept"
    assert verdict(served, "440100000000381", OTHER_IMEI) == "reject reason=imei-mismatch"


def test_lock_set_refuses_a_bad_imei(served: Served) -> None:
    result = simgate(served, "lock", "set", "1", "353879234252634")
    assert result.returncode == 1
    assert "400" in result.stderr and "imei" in result.stderr
    assert json.loads(simgate(served, "sims", "get", "1", "--json").stdout)["imeiLock"] is None


def test_lock_set_without_imei_takes_the_sessions(served: Served) -> None:
    create(served, "cli-session", "440100000000331")
    no_session = simgate(served, "lock", "set", "cli-session")
    assert no_session.returncode == 1
    assert "no online session" in no_session.stderr
    assert no_session.stdout == ""
    assert verdict(served, "440100000000331", OTHER_IMEI) == "accept"
    locked = simgate(served, "lock", "set", "cli-session")
    assert locked.returncode == 0, locked.stderr
    assert table(locked.stdout)[1] == [
        "cli-session",
        "440100000000331",
        "active",
        OTHER_IMEI,
        "online",
    ]
    assert verdict(served, "440100000000331", SAME_IMEISV) == "reject reason=imei-mismatch"


def test_lock_set_after_a_session_without_imei_warns_on_stderr(served: Served) -> None:
    create(served, "cli-warn", "440100000000341")
    assert verdict(served, "440100000000341") == "accept"
    refused = simgate(served, "lock", "set", "cli-warn")
    assert refused.returncode == 1
    assert "did not report an IMEI" in refused.stderr
    warned = simgate(served, "lock", "set", "cli-warn", LOCKED_IMEI)
    assert warned.returncode == 0
    assert warned.stderr.startswith("warning: ")
    assert "did not report an IMEI" in warned.stderr
    assert LOCKED_IMEI in warned.stdout


def test_lock_batch_reports_each_sim(served: Served) -> None:
    create(served, "cli-batch-1", "440100000000351")
    create(served, "cli-batch-2", "440100000000352")
    assert verdict(served, "440100000000351", SAME_IMEISV) == "accept"
    result = simgate(served, "lock", "batch", "cli-batch-1", "cli-batch-2")
    assert result.returncode == 1  # one SIM could not be locked
    rows = table(result.stdout)
    assert rows[0] == ["SIM ID", "RESULT", "IMEI LOCK / ERROR"]
    assert rows[1] == ["cli-batch-1", "locked", LOCKED_IMEI]
    assert rows[2][:2] == ["cli-batch-2", "refused"]
    assert "no online session" in rows[2][2]


def test_lock_batch_reads_a_file_and_sends_it_in_pages_of_the_api_limit(
    served: Served, tmp_path: Path
) -> None:
    create(served, "cli-file-1", "440100000000391")
    assert verdict(served, "440100000000391", SAME_IMEISV) == "accept"
    unknown = [f"cli-nope-{n}" for n in range(1000)]
    listing = tmp_path / "sims.txt"
    listing.write_text("\n".join(["# fleet A", "cli-file-1", "", *unknown, "  cli-file-1 "]))
    result = simgate(served, "lock", "batch", "--file", str(listing), "--json")
    assert result.returncode == 1, result.stderr  # the unknown SIMs could not be locked
    body = json.loads(result.stdout)
    assert [item["simId"] for item in body["results"]] == ["cli-file-1", *unknown, "cli-file-1"]
    assert body["failed"] == 1000
    first, last = body["results"][0], body["results"][-1]  # the last one in a second call
    assert first["ok"] and last["ok"] and last["imeiLock"]["imei"] == LOCKED_IMEI


def test_lock_batch_without_sim_ids_is_a_usage_error(served: Served, tmp_path: Path) -> None:
    empty = tmp_path / "none.txt"
    empty.write_text("# nothing yet\n\n")
    for args in (("lock", "batch"), ("lock", "batch", "--file", str(empty))):
        result = simgate(served, *args)
        assert result.returncode == 2
        assert "no SIM ids given" in result.stderr
    missing = simgate(served, "lock", "batch", "--file", str(tmp_path / "missing.txt"))
    assert missing.returncode == 2 and "missing.txt" in missing.stderr


# -- groups, events, snapshot ---------------------------------------------------------------------


def test_groups_put_and_get_never_print_the_password(served: Served) -> None:
    group = {
        "chap": {"username": "fleet", "password": CHAP_PASSWORD},
        "vpg": {"rendezvousPoint": "tokyo"},
    }
    put = simgate(served, "groups", "put", "cli-fleet", json.dumps(group))
    assert put.returncode == 0, put.stderr
    shown = simgate(served, "groups", "get", "cli-fleet")
    assert shown.returncode == 0
    assert json.loads(put.stdout) == json.loads(shown.stdout)
    body = json.loads(shown.stdout)
    assert body["groupId"] == "cli-fleet"
    assert body["chap"] == {"username": "fleet", "passwordSet": True}
    assert body["vpg"] == {"rendezvousPoint": "tokyo"}
    in_group = simgate(
        served,
        "sims",
        "create",
        '{"simId": "cli-chap", "imsi": "440100000000361", "groupId": "cli-fleet"}',
    )
    assert table(in_group.stdout)[1][3] == "cli-fleet"
    assert verdict(served, "440100000000361") == "reject reason=chap-failed"
    chap = probe(
        served.ports, "440100000000361", "--user-name", "fleet", "--chap-password", CHAP_PASSWORD
    )
    assert chap.returncode == 0, chap.stdout
    for output in (put.stdout, put.stderr, shown.stdout, in_group.stdout, *served.log):
        assert CHAP_PASSWORD not in output
    mismatch = simgate(served, "groups", "put", "cli-fleet", '{"groupId": "other"}')
    assert mismatch.returncode == 1
    assert "groupId" in mismatch.stderr
    unknown = simgate(served, "groups", "get", "no-such-group")
    assert unknown.returncode == 4
    assert "no-such-group" in unknown.stderr


def test_events_lists_lock_rejects_newest_first(served: Served) -> None:
    assert verdict(served, "440100000000013", OTHER_IMEI) == "reject reason=imei-mismatch"
    assert verdict(served, "440100000000013", SAME_IMEISV) == "accept"
    listed = simgate(served, "events", "13")
    assert listed.returncode == 0, listed.stderr
    rows = table(listed.stdout)
    assert rows[0] == ["TIME", "EVENT", "DETAIL"]
    assert [row[1] for row in rows[1:]] == ["Created", "imeiLockRejected"]
    detail = json.loads(rows[2][2])
    assert detail["reason"] == "imei-mismatch"
    assert detail["reported"] == OTHER_IMEI
    assert detail["locked"] == LOCKED_IMEI
    body = json.loads(simgate(served, "events", "13", "--json", "--limit", "1").stdout)
    assert body["simId"] == "13"
    assert [event["event"] for event in body["events"]] == ["Created"]


def test_snapshot_compact_and_download(served: Served, tmp_path: Path) -> None:
    create(served, "cli-snapshot", "440100000000371")
    compacted = simgate(served, "snapshot", "compact")
    assert compacted.returncode == 0, compacted.stderr
    rows = table(compacted.stdout)
    assert rows[0] == ["SEQUENCE", "SNAPSHOT"]
    seq = int(rows[1][0])
    assert rows[1][1].endswith(f"snapshot-{seq:020d}.sgs")
    again = json.loads(simgate(served, "snapshot", "compact", "--json").stdout)
    assert again["seq"] == seq  # nothing written since
    output = tmp_path / "copy.sgs"
    downloaded = simgate(served, "snapshot", "download", str(output))
    assert downloaded.returncode == 0, downloaded.stderr
    raw = output.read_bytes()
    assert raw.startswith(MAGIC)
    assert downloaded.stdout.strip() == f"wrote {len(raw)} octets to {output}"


# -- reaching the API -----------------------------------------------------------------------------


def test_api_and_token_from_the_command_line_or_environment(served: Served) -> None:
    api = f"http://127.0.0.1:{served.ports['http']}"
    explicit = simgate(served, "sims", "get", "3", "--api", api, "--token", TOKEN)
    assert explicit.returncode == 0, explicit.stderr
    from_env = simgate(served, "sims", "get", "3", "--api", api, env={"SIMGATE_TOKEN": TOKEN})
    assert from_env.returncode == 0, from_env.stderr
    wrong = simgate(served, "sims", "get", "3", "--api", api, "--token", "wrong")
    assert wrong.returncode == 1
    assert "401" in wrong.stderr
    assert "wrong" not in wrong.stdout


def test_ids_are_sent_whole(served: Served) -> None:
    for sim_id in ("1#x", "1?x", "no such"):
        result = simgate(served, "sims", "get", sim_id)
        assert result.returncode == 4, (sim_id, result.stdout, result.stderr)
        assert "404" in result.stderr
    locked = simgate(served, "lock", "unset", "3#")
    assert locked.returncode == 4
    assert json.loads(simgate(served, "sims", "get", "3", "--json").stdout)["imeiLock"] is not None
    group = simgate(served, "groups", "get", "chap?x")
    assert group.returncode == 4


def test_usage_errors_exit_2(served: Served, tmp_path: Path) -> None:
    missing = simgate(served, "sims", "create", f"@{tmp_path / 'missing.json'}")
    assert missing.returncode == 2
    assert "missing.json" in missing.stderr and "Traceback" not in missing.stderr
    for api in ("http://[::1", "ftp://127.0.0.1/"):
        bad = simgate(served, "sims", "list", "--api", api, "--token", TOKEN)
        assert bad.returncode == 2, (api, bad.stderr)
        assert bad.stderr.startswith("simgate: ") and "Traceback" not in bad.stderr


def test_server_down_exits_3(served: Served) -> None:
    closed = f"http://127.0.0.1:{free_port(socket.SOCK_STREAM)}"
    for args in (("sims", "list"), ("lock", "set", "1", LOCKED_IMEI), ("snapshot", "compact")):
        result = simgate(served, *args, "--api", closed, "--token", TOKEN)
        assert result.returncode == 3, args
        assert "cannot reach" in result.stderr
        assert result.stdout == ""
