"""Start-up from snapshot + journal, and compaction: the table served is the table replayed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from array import array
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from core.provision import SimRow, VirtualRow, import_file, write_snapshot
from core.store import snapshot_writer
from core.store.commands import (
    Command,
    CommandError,
    PutGroup,
    PutSim,
    SetLock,
    SetStatus,
    UnsetLock,
    parse_lock,
)
from core.store.format import (
    COLD,
    IMSI_INDEX,
    RECORD,
    RECORDS,
    SIM_ID_INDEX,
    SnapshotError,
    list_snapshots,
    snapshot_path,
)
from core.store.journal import JournalError, frame, list_segments, segment_path
from core.store.journal_writer import JournalWriter
from core.store.live import LiveTable
from core.store.records import Status
from core.store.recovery import Pacer, compact, main, open_live, prune_snapshots
from core.store.snapshot import map_snapshot
from core.store.snapshot_writer import SnapshotWriter
from core.store.table import Table
from tests.subscribers import SIMS

ENTRY = (sys.executable, "-m", "core.store.recovery")
BASE_IMSIS = [440100000000000 + n for n in range(1, 14)] + [999990000000000 + n for n in (1, 2, 3)]
NEW_IMSIS = [440100000000100 + n for n in range(12)]
NEW_VIRTUAL = [999990000000100 + n for n in range(6)]
ALL_IMSIS = BASE_IMSIS + NEW_IMSIS + NEW_VIRTUAL
IMEIS = ["353879234252633", "490154203237518|ANONYMOUS", "35209900176148"]


def _import(data_dir: Path, lines: list[dict[str, Any]]) -> Path:
    source = data_dir.parent / f"{data_dir.name}.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return import_file(source, data_dir, seq=1, now=0.0).snapshot_path


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "data"
    _import(directory, SIMS)
    return directory


def _view(table: LiveTable) -> tuple[Any, ...]:
    """Everything a reader can see of a table."""
    return (
        list(table.documents()),
        table.group_documents(),
        table.groups,
        table.sim_ids(),
        [table.find(imsi) for imsi in ALL_IMSIS],
        (table.seq, table.sim_count, table.imsi_count),
    )


# -- random write sequences ------------------------------------------------------------------

NEW_IDS = ["n0", "n1", "n2", "n3", "n4", "n5"]
sim_ids = st.sampled_from([str(n) for n in range(1, 14)]) | st.sampled_from([*NEW_IDS, "absent"])
statuses = st.sampled_from(Status)


@st.composite
def put_sims(draw: st.DrawFn) -> Command:
    imsi = draw(st.sampled_from(NEW_IMSIS * 3 + NEW_VIRTUAL[:2] + BASE_IMSIS[:1]))
    sim_id = draw(st.sampled_from([*NEW_IDS, "1"]))
    document: dict[str, Any] = {"simId": sim_id, "imsi": f"{imsi:015d}"}
    if draw(st.booleans()):
        document["status"] = draw(st.sampled_from(["ready", "standby", "terminated"]))
    if draw(st.booleans()):
        document["groupId"] = draw(st.sampled_from(["chap", "first", "first", "g2"]))
    if draw(st.booleans()):
        document["imeiLock"] = draw(st.sampled_from(IMEIS))
    if draw(st.booleans()):
        document["lockOnFirstConnect"] = True
    virtual = draw(st.lists(st.sampled_from(NEW_VIRTUAL + BASE_IMSIS[-1:]), max_size=2))
    if virtual:
        document["subscription"] = "plan-KM1"
        document["virtualSubscribers"] = [{"imsi": f"{v:015d}"} for v in virtual]
    return PutSim(document)


@st.composite
def put_groups(draw: st.DrawFn) -> Command:
    document: dict[str, Any] = {"groupId": draw(st.sampled_from(["chap", "first", "g2", "g3"]))}
    if draw(st.booleans()):
        document["lockOnFirstConnect"] = True
    if draw(st.booleans()):
        document["chap"] = {"username": "u", "password": draw(st.sampled_from(["p", "q"]))}
    return PutGroup(document)


@st.composite
def set_locks(draw: st.DrawFn) -> Command:
    sim_id = draw(sim_ids)
    imei = draw(st.sampled_from(IMEIS))
    allow = draw(st.booleans()) or "|" in imei
    lock = parse_lock(sim_id, imei, allow)
    return SetLock(sim_id, lock.identity, lock.imei, allow, if_unlocked=draw(st.booleans()))


writes = st.one_of(
    set_locks(),
    st.builds(UnsetLock, sim_ids),
    st.builds(SetStatus, sim_ids, statuses),
    put_sims(),
    put_groups(),
)
#: A batch is checked as a whole, then journaled and applied (group commit): a write may lose a
#: race to one before it in its batch. "compact" and "reopen" come between batches.
steps = st.lists(
    st.lists(writes, min_size=1, max_size=4) | st.sampled_from(["compact", "reopen"]),
    min_size=1,
    max_size=25,
)


class Disk:
    """The service's side: journal every write, compact and restart as the service would."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.live, self.writer, _ = open_live(data_dir)

    def write(self, command: Command) -> int:
        return self.writer.append(command.to_json())

    def compact(self) -> None:
        upto = self.writer.rotate() - 1
        path = compact(self.data_dir, upto, created_at=float(upto))
        assert path == snapshot_path(self.data_dir, upto) or upto == 0
        swapped = LiveTable(Table.open(path))
        assert _view(swapped) == _view(self.live)
        self.live.close()
        self.live = swapped
        self.writer.trim(prune_snapshots(self.data_dir))

    def reopen(self) -> None:
        self.close()
        self.live, self.writer, report = open_live(self.data_dir)
        assert report.torn is None

    def close(self) -> None:
        self.writer.close()
        self.live.close()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=steps)
def test_replay_after_compactions_equals_applying_in_memory(
    steps: list[list[Command] | str],
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        data_dir = Path(directory) / "data"
        _import(data_dir, SIMS)
        memory = LiveTable(Table.open(list_snapshots(data_dir)[0][1]))
        disk = Disk(data_dir)
        try:
            for step in steps:
                if step == "compact":
                    disk.compact()
                    event("compacted")
                elif step == "reopen":
                    disk.reopen()
                elif not isinstance(step, str):
                    _batch(memory, disk, step)
            disk.reopen()
            assert _view(disk.live) == _view(memory)
            event(f"SIMs added: {memory.sim_count - 13}")
        finally:
            disk.close()
            memory.close()


def _batch(memory: LiveTable, disk: Disk, batch: list[Command]) -> None:
    journaled: list[tuple[int, Command]] = []
    for command in batch:
        try:
            checked = memory.check(command)
        except CommandError as error:
            event(f"refused: {type(command).__name__} {error.field}")
            continue
        journaled.append((disk.write(checked), checked))
    disk.writer.sync()
    for seq, command in journaled:
        applied = memory.apply(seq, command)
        assert disk.live.apply(seq, command) == applied
        event(type(command).__name__ + ("" if applied else " lost a race"))


# -- start-up ----------------------------------------------------------------------------------


def _journal(data_dir: Path, commands: Sequence[Command]) -> None:
    live, writer, _ = open_live(data_dir)
    for command in commands:
        checked = live.check(command)
        live.apply(writer.append(checked.to_json()), checked)
    writer.close()
    live.close()


def test_open_live_replays_and_continues_the_sequence(data_dir: Path) -> None:
    _journal(data_dir, [UnsetLock("2"), SetStatus("4", Status.ACTIVE)])
    live, writer, report = open_live(data_dir)
    assert (report.snapshot_seq, report.replayed, report.torn, report.skipped) == (1, 2, None, ())
    assert report.snapshot == snapshot_path(data_dir, 1)
    assert (live.seq, writer.next_seq) == (3, 4)
    sub = live.find(440100000000004)
    assert sub is not None and sub.status == Status.ACTIVE
    writer.close()
    live.close()


def test_a_torn_last_record_is_cut_and_reported(data_dir: Path) -> None:
    _journal(data_dir, [UnsetLock("2"), UnsetLock("3")])
    segment = segment_path(data_dir, 2)
    size = segment.stat().st_size
    with open(segment, "ab") as file:
        file.write(frame(4, UnsetLock("11").to_json())[:-3])
    live, writer, report = open_live(data_dir)
    assert report.torn is not None and (report.torn.path, report.torn.offset) == (segment, size)
    assert (report.replayed, live.seq, writer.next_seq) == (2, 3, 4)
    assert segment.stat().st_size == size
    writer.close()
    live.close()


def test_start_up_falls_back_to_the_previous_snapshot(data_dir: Path) -> None:
    _journal(data_dir, [UnsetLock("2"), UnsetLock("3")])
    newest = compact(data_dir, 3)
    with Table.open(newest) as table:
        records = table.mapped.header.sections[RECORDS].offset
    with open(newest, "r+b") as file:
        file.seek(records)
        file.write(b"\xff\xff")
    live, writer, report = open_live(data_dir)
    assert (report.snapshot_seq, report.replayed, live.seq) == (1, 2, 3)
    assert [error.path for error in report.skipped] == [newest]
    writer.close()
    live.close()


def test_a_gap_between_snapshot_and_journal_refuses_to_start(data_dir: Path) -> None:
    with JournalWriter(data_dir, 5) as writer:
        writer.append(UnsetLock("2").to_json())
    with pytest.raises(JournalError, match="records 2-4 are missing"):
        open_live(data_dir)


def test_a_record_that_is_not_a_command_refuses_to_start(data_dir: Path) -> None:
    with JournalWriter(data_dir, 2) as writer:
        writer.append(b'{"op":"explode"}')
    with pytest.raises(JournalError, match="record 2 is not a command: unknown op 'explode'"):
        open_live(data_dir)


def test_an_empty_data_directory_starts_empty(tmp_path: Path) -> None:
    live, writer, report = open_live(tmp_path)
    assert (report.snapshot, report.snapshot_seq, live.sim_count) == (None, 0, 0)
    assert writer.next_seq == 1
    group = {"groupId": "g"}
    sim = {"simId": "a", "imsi": "440100000000001", "groupId": "g"}
    for command in (PutGroup(group), PutSim(sim)):
        checked = live.check(command)
        live.apply(writer.append(checked.to_json()), checked)
    writer.close()
    path = compact(tmp_path, 2)
    with Table.open(path) as table:
        sub = table.find(440100000000001)
        assert sub is not None and sub.group == 0 and table.sim_document(0)["simId"] == "a"
    live.close()


# -- compaction --------------------------------------------------------------------------------


def test_compact_bounds(data_dir: Path) -> None:
    _journal(data_dir, [UnsetLock("2"), UnsetLock("3")])
    assert compact(data_dir, 1) == snapshot_path(data_dir, 1), "already there"
    with pytest.raises(JournalError, match=r"sequence 9 not journaled \(last 3\)"):
        compact(data_dir, 9)
    assert compact(data_dir, 2) == snapshot_path(data_dir, 2)
    with pytest.raises(ValueError, match="older than the snapshot's 2"):
        compact(data_dir, 1)


def test_compaction_grows_the_indexes_when_sims_are_added(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    _import(data_dir, [{"simId": "0", "imsi": "440100000000000"}])
    added = [PutSim({"simId": f"s{n}", "imsi": f"4401000000001{n:02d}",
              "subscription": "plan-D", "virtualSubscribers": [{"imsi": f"9999900000001{n:02d}"}]})
             for n in range(30)]  # fmt: skip
    _journal(data_dir, added)
    live, writer, _ = open_live(data_dir)
    expected = _view(live)
    writer.close()
    live.close()
    with Table.open(compact(data_dir, 31)) as table:
        assert (table.sim_count, table.imsi_count) == (31, 61)
        assert table.mapped.header.imsi_slots == 128 and table.mapped.header.sim_id_slots == 64
        compacted = LiveTable(table)
        assert _view(compacted) == expected
        assert [compacted.sim_index(f"s{n}") for n in range(30)] == list(range(1, 31))


def _rows(count: int) -> Iterator[SimRow]:
    for n in range(count):
        virtual = (VirtualRow(999990000000000 + n, n % 3 == 0, 0x64400000 + n),) if n % 7 else ()
        yield SimRow(f"sim-{n}", 440100000000000 + n, lock=n, subscribers=virtual)


def test_compaction_does_not_parse_unchanged_sims(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    count = 3000
    write_snapshot(tmp_path, _rows(count), seq=1)
    changed: list[Command] = [
        UnsetLock("sim-5"),
        SetStatus("sim-2000", Status.SUSPENDED),
        PutSim({"simId": "new", "imsi": "440100000009999"}),
        UnsetLock("sim-2999"),
    ]
    _journal(tmp_path, changed)
    with Table.open(snapshot_path(tmp_path, 1)) as base:
        suspended = {**base.sim_document(2000), "status": "suspended"}
    loads: list[int] = []
    real = json.loads

    def counting(text: Any, **kwargs: Any) -> Any:
        loads.append(len(text))
        return real(text, **kwargs)

    monkeypatch.setattr(json, "loads", counting)
    path = compact(tmp_path, 5)
    # the groups section, the 4 journal records, the 3 changed SIMs' documents (once each:
    # Table.sim_by_id confirms a simId from the document's first bytes, without parsing it)
    assert len(loads) == 1 + 4 + 3, loads
    monkeypatch.undo()
    live, writer, _ = open_live(tmp_path)
    assert live.base.path == path and live.seq == 5
    sims = [live.find(440100000000000 + n) for n in range(count)]
    assert [sub.lock if sub else None for sub in sims] == [
        0 if n in (5, 2999) else n for n in range(count)
    ]
    assert [sub.sim_index for sub in sims if sub] == list(range(count))
    virtual = [live.find(999990000000000 + n) for n in range(count) if n % 7]
    assert all(sub is not None and sub.virtual for sub in virtual)
    assert live.sim_document("sim-2000") == suspended
    assert live.sim_ids(2998) == ["sim-2998", "sim-2999", "new"]
    writer.close()
    live.close()


def test_compaction_refuses_cold_documents_out_of_order(tmp_path: Path) -> None:
    mapped = map_snapshot(write_snapshot(tmp_path / "in-order", _rows(3), seq=1))
    sections = [mapped.buffer[s.offset : s.offset + s.length] for s in mapped.header.sections]
    records = bytearray(sections[RECORDS])
    first, second = slice(24, 32), slice(RECORD.size + 24, RECORD.size + 32)
    records[first], records[second] = records[second], records[first]  # swap cold offsets
    with SnapshotWriter(tmp_path, 1, 0.0) as writer:
        imsis, sim_ids = (array("Q", sections[n]) for n in (IMSI_INDEX, SIM_ID_INDEX))
        writer.add_sections([sections[COLD]], records, imsis, sim_ids, mapped.header.imsi_count)
        writer.commit([])
    mapped.close()
    _journal(tmp_path, [UnsetLock("sim-2")])
    with pytest.raises(SnapshotError, match="cold documents are not in record order"):
        compact(tmp_path, 2)


def test_prune_keeps_the_newest_two_and_says_how_far_to_trim(data_dir: Path) -> None:
    for n in range(2, 5):
        _journal(data_dir, [UnsetLock(str(n))])
        compact(data_dir, n)
    assert prune_snapshots(data_dir) == 3
    assert [seq for seq, _ in list_snapshots(data_dir)] == [4, 3]
    assert prune_snapshots(data_dir / "nowhere") == 0


def test_the_compact_entry_point(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _journal(data_dir, [UnsetLock("2")])
    assert main(["compact", str(data_dir), "2", "--created-at", "7.5"]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert path == snapshot_path(data_dir, 2)
    with Table.open(path) as table:
        assert table.created_at == 7.5
    assert main(["compact", str(data_dir), "9"]) == 1
    assert "sequence 9 not journaled" in capsys.readouterr().err


def test_a_paced_compaction_writes_the_same_snapshot_in_small_pieces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rate limit changes when the octets are written, not which: the paced file is the
    unpaced one byte for byte, handed to the pacer a piece at a time, and flushed as it goes."""
    monkeypatch.setattr(snapshot_writer, "PACE_CHUNK", 4096)
    monkeypatch.setattr(snapshot_writer, "FLUSH_EVERY", 64 * 1024)
    files = []
    pieces: list[int] = []
    flushes: list[int] = []
    real = os.fdatasync

    def counted(fd: int) -> None:
        # the compaction's own: a journal writer's zeroing thread fdatasyncs its spare too
        if threading.current_thread() is threading.main_thread():
            flushes.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", counted)
    for name, pace in (("plain", None), ("paced", pieces.append)):
        directory = tmp_path / name
        write_snapshot(directory, _rows(3000), seq=1)
        _journal(
            directory, [UnsetLock("sim-5"), PutSim({"simId": "new", "imsi": "440100000009999"})]
        )
        files.append(compact(directory, 3, 1.0, pace).read_bytes())
        if pace is None:
            assert not flushes, "unpaced: one fsync at the end, no fdatasync on the way"
    assert files[0] == files[1]
    assert max(pieces) == 4096 and sum(pieces) > 0.9 * len(files[1])
    assert len(flushes) >= len(files[1]) // (64 * 1024) - 1


def test_the_pacer_sleeps_only_when_the_octets_run_ahead_of_the_rate() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    pacer = Pacer(1000.0, lambda: now[0], sleep)
    pacer(500)  # 0.5 s of budget used at once: ahead by 0.5 s
    assert slept == [0.5]
    now[0] += 2.0  # idle for 2 s: the budget is there, no sleep
    pacer(1000)
    assert slept == [0.5]
    pacer(2000)  # 3.5 s of octets after 2.5 s: ahead by 1 s
    assert slept == [0.5, pytest.approx(1.0)]
    with pytest.raises(ValueError, match="rate"):
        Pacer(0.0, lambda: 0.0, sleep)


def test_the_compact_entry_point_takes_a_rate(data_dir: Path) -> None:
    _journal(data_dir, [UnsetLock("2")])
    done = subprocess.run(
        [*ENTRY, "compact", str(data_dir), "2", "--rate-mb", "50", "--nice", "19"],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[2],
    )
    assert Path(done.stdout.strip()) == snapshot_path(data_dir, 2)


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="Linux's SCHED_IDLE")
def test_the_compact_entry_point_runs_idle_when_asked(data_dir: Path) -> None:
    _journal(data_dir, [UnsetLock("2")])
    # the entry point, then the policy it left its process in
    script = (
        "import os, sys\n"
        "from core.store.recovery import main\n"
        "status = main(sys.argv[1:])\n"
        "print(os.sched_getscheduler(0))\n"
        "sys.exit(status)\n"
    )
    command = [sys.executable, "-c", script, "compact", str(data_dir), "2", "--idle", "--nice=19"]
    done = subprocess.run(
        command, capture_output=True, text=True, check=True, cwd=Path(__file__).parents[2]
    )
    path, policy = done.stdout.split()
    assert Path(path) == snapshot_path(data_dir, 2)
    assert int(policy) == os.SCHED_IDLE


def test_the_compact_entry_point_takes_its_cpus(data_dir: Path) -> None:
    _journal(data_dir, [UnsetLock("2")])

    def compact_on(cpus: str) -> subprocess.CompletedProcess[str]:
        command = [*ENTRY, "compact", str(data_dir), "2", f"--cpus={cpus}"]
        root = Path(__file__).parents[2]
        return subprocess.run(command, capture_output=True, text=True, check=False, cwd=root)

    done = compact_on(str(max(os.sched_getaffinity(0))))
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()) == snapshot_path(data_dir, 2)
    for bad in ("4096", "one"):  # a CPU the machine lacks is refused, before anything is written
        refused = compact_on(bad)
        assert refused.returncode == 2
        assert refused.stderr.startswith(f"compact: --cpus {bad}:")


def test_compaction_runs_as_a_child_process(data_dir: Path) -> None:
    _journal(data_dir, [UnsetLock("2"), UnsetLock("3")])
    done = subprocess.run(
        [sys.executable, "-m", "core.store.recovery", "compact", str(data_dir), "3"],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[2],
    )
    assert Path(done.stdout.strip()) == snapshot_path(data_dir, 3)
    with Table.open(snapshot_path(data_dir, 3)) as table:
        assert table.created_at > 1.7e9, "now, by default"


def test_trimmed_journal_still_starts(data_dir: Path) -> None:
    _journal(data_dir, [UnsetLock("2")])
    live, writer, _ = open_live(data_dir)
    assert writer.rotate() == 3
    compact(data_dir, 2)
    writer.trim(2)
    live.apply(writer.append(UnsetLock("3").to_json()), UnsetLock("3"))
    writer.close()
    live.close()
    assert [first for first, _ in list_segments(data_dir)] == [3]
    live, writer, report = open_live(data_dir)
    assert (report.snapshot_seq, report.replayed, live.seq) == (2, 1, 3)
    writer.close()
    live.close()
