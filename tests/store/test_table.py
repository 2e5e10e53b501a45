"""The Table over a mapped snapshot: IMSI and simId lookups, groups, the empty table."""

from __future__ import annotations

import json
import tempfile
from array import array
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.store import snapshot_writer, table
from core.store.records import NO_GROUP, Group, Status
from core.store.snapshot import (
    ALIGN,
    FIBONACCI,
    SnapshotError,
    SnapshotWriter,
    group_document,
    imsi_home,
    slot_bits,
)
from core.store.snapshot_writer import fill_slots
from core.store.table import Table, load_newest
from tests.conftest import TableFactory

MAX_IMSIS = 40
BITS = range(slot_bits(1), slot_bits(MAX_IMSIS) + 1)


def _crowded(bits: int) -> list[int]:
    """IMSIs whose home is the last slot or slot 0 of a 2**bits table: probing must wrap."""
    last = (1 << bits) - 1
    found: list[int] = []
    imsi = 440100000000000
    while len(found) < 12:
        imsi += 1
        if imsi_home(imsi, bits) in (last, 0):
            found.append(imsi)
    return found


CROWDED = {bits: _crowded(bits) for bits in BITS}


@st.composite
def imsi_sets(draw: st.DrawFn) -> list[int]:
    count = draw(st.integers(1, MAX_IMSIS))
    pool = st.sampled_from(CROWDED[slot_bits(count)]) | st.integers(1, 10**15 - 1)
    return sorted(draw(st.sets(pool, min_size=count, max_size=count)))


def _document(n: int) -> bytes:
    return b'{"simId":"sim-%d"}' % n


@settings(max_examples=60, deadline=None)
@given(imsis=imsi_sets(), absent=st.lists(st.integers(0, 10**15 - 1), max_size=20), data=st.data())
def test_every_imsi_is_found_and_absent_ones_are_not(
    imsis: list[int], absent: list[int], data: st.DataObject
) -> None:
    primaries = max(1, data.draw(st.integers(1, len(imsis)), label="primaries"))
    virtual_of = {imsi: n % primaries for n, imsi in enumerate(imsis[primaries:])}
    with tempfile.TemporaryDirectory() as directory:
        with SnapshotWriter(directory, 1, 0.0) as writer:
            for n, imsi in enumerate(imsis[:primaries]):
                subscribers = [(v, n % 2 == 0, n) for v, sim in virtual_of.items() if sim == n]
                writer.add_sim(imsi, f"sim-{n}", _document(n), lock=n, subscribers=subscribers)
            path = writer.commit([])
        with Table.open(path) as mapped:
            for n, imsi in enumerate(imsis):
                found = mapped.find(imsi)
                sim = n if n < primaries else virtual_of[imsi]
                assert found is not None
                assert (found.imsi, found.sim_index, found.lock) == (imsi, sim, sim)
                assert found.primary_imsi == imsis[sim]
                assert found.virtual == (n >= primaries)
                assert found.terminated == (n >= primaries and sim % 2 == 0)
            for imsi in absent:
                if imsi not in imsis:
                    assert mapped.find(imsi) is None
            for n in range(primaries):
                assert mapped.sim_by_id(f"sim-{n}") == n
            assert mapped.sim_by_id("sim-absent") is None


def test_probing_wraps_around_the_end() -> None:
    bits = 3
    last = (1 << bits) - 1
    at_last = [imsi for imsi in CROWDED[bits] if imsi_home(imsi, bits) == last][:3]
    slots = array("Q", [0]) * (2 << bits)
    entries = ((imsi, n) for n, imsi in enumerate(at_last))
    assert fill_slots(slots, bits, FIBONACCI, entries, _same) == []
    assert [slots[2 * last], slots[0], slots[2]] == at_last
    assert [slots[2 * last + 1], slots[1], slots[3]] == [0, 1, 2]


def _same(old: int, new: int) -> bool:
    return True


def test_all_zero_imsi_is_not_an_empty_slot(tmp_path: Path) -> None:
    with SnapshotWriter(tmp_path, 1, 0.0) as writer:
        writer.add_sim(440100000000001, "a", b'{"simId":"a"}')
        path = writer.commit([])
    with Table.open(path) as mapped:
        assert mapped.find(0) is None


def test_colliding_sim_id_keys_are_told_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def colliding(sim_id: str) -> int:
        return 0x1234

    monkeypatch.setattr(snapshot_writer, "sim_id_key", colliding)
    monkeypatch.setattr(table, "sim_id_key", colliding)
    with SnapshotWriter(tmp_path, 1, 0.0) as writer:
        for n in range(5):
            writer.add_sim(440100000000001 + n, f"sim-{n}", _document(n))
        assert writer.index() == []
        path = writer.commit([])
    with Table.open(path) as mapped:
        assert [mapped.sim_by_id(f"sim-{n}") for n in range(5)] == [0, 1, 2, 3, 4]
        assert mapped.sim_by_id("sim-9") is None


@pytest.mark.parametrize(
    ("sim_ids", "documents"),
    [
        (["sim-0", "sim-00"], ['{"simId":"sim-0"}', '{"simId":"sim-00"}']),  # a prefix of another
        (["sïm", "sim"], ['{"simId":"s\\u00efm"}', '{"simId":"sim"}']),  # escaped non-ASCII
        (['si"m', "si\\m"], ['{"simId":"si\\"m"}', '{"simId":"si\\\\m"}']),  # quote, backslash
        (["late", "later"], ['{"imsi":"x","simId":"late"}', '{"imsi":"y","simId":"later"}']),
        (["sïm", "日本"], ['{"simId":"sïm"}', '{"simId":"日本"}']),  # UTF-8 as compaction writes
        (["x" * 300, "x" * 30], ['{"simId":"' + "x" * 300 + '"}', '{"simId":"' + "x" * 30 + '"}']),
    ],
    ids=["prefix", "escaped", "quote-backslash", "simid-not-first", "utf-8", "long"],
)
def test_colliding_sim_ids_are_told_apart_however_the_document_spells_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sim_ids: list[str], documents: list[str]
) -> None:
    """sim_by_id reads the raw document when it can and parses it when it must: the answer
    is the same either way."""
    monkeypatch.setattr(snapshot_writer, "sim_id_key", lambda sim_id: 0x1234)
    monkeypatch.setattr(table, "sim_id_key", lambda sim_id: 0x1234)
    with SnapshotWriter(tmp_path, 1, 0.0) as writer:
        for n, (sim_id, document) in enumerate(zip(sim_ids, documents, strict=True)):
            writer.add_sim(440100000000001 + n, sim_id, document.encode())
        path = writer.commit([])
    with Table.open(path) as mapped:
        assert [mapped.sim_by_id(sim_id) for sim_id in sim_ids] == [0, 1]
        assert mapped.sim_by_id("sim") is (1 if "sim" in sim_ids else None)
        assert mapped.sim_by_id("absent") is None
        assert [mapped.sim_id(0), mapped.sim_id(1)] == sim_ids
        with pytest.raises(IndexError):
            mapped.sim_id(2)
    with Table.open(path) as mapped:  # the simIds read from the records first (remembered)
        assert [mapped.sim_id(1), mapped.sim_id(0)] == sim_ids[::-1]
        assert [mapped.sim_by_id(sim_id) for sim_id in sim_ids] == [0, 1]
        assert mapped.sim_by_id("absent") is None


@settings(max_examples=150, deadline=None)
@given(sim_id=st.text(min_size=1, max_size=300), ascii_only=st.booleans(), first=st.booleans())
def test_sim_id_reads_any_simid_however_json_wrote_it(
    sim_id: str, ascii_only: bool, first: bool
) -> None:
    fields = {"simId": sim_id, "imsi": "440100000000001"}
    if not first:
        fields = {"imsi": "440100000000001", "simId": sim_id}
    document = json.dumps(fields, separators=(",", ":"), ensure_ascii=ascii_only)
    with tempfile.TemporaryDirectory() as directory:
        with SnapshotWriter(Path(directory), 1, 0.0) as writer:
            writer.add_sim(440100000000001, sim_id, document.encode())
            path = writer.commit([])
        with Table.open(path) as mapped:
            assert mapped.sim_id(0) == sim_id
            assert mapped.sim_by_id(sim_id) == 0


def test_lock_on_first_connect_is_the_sim_flag_and_the_group_keeps_its_own(
    table_factory: TableFactory,
) -> None:
    """find() gives the SIM's own flag; the policy ORs in its group's (a PutGroup then needs
    no change to the SIM's Subscriber)."""
    mapped = table_factory(
        [
            {"kind": "group", "groupId": "auto", "lockOnFirstConnect": True},
            {"kind": "group", "groupId": "manual"},
            {"simId": "1", "imsi": "440100000000001", "groupId": "auto"},
            {"simId": "2", "imsi": "440100000000002", "groupId": "manual"},
            {"simId": "3", "imsi": "440100000000003", "lockOnFirstConnect": True},
            {"simId": "4", "imsi": "440100000000004"},
            {
                "simId": "5",
                "imsi": "440100000000005",
                "groupId": "manual",
                "lockOnFirstConnect": True,
            },
        ]
    )
    flags = [mapped.find(440100000000001 + n) for n in range(5)]
    assert [s.lock_on_first_connect for s in flags if s] == [False, False, True, False, True]
    assert [s.group for s in flags if s] == [0, 1, NO_GROUP, NO_GROUP, 1]
    assert [g.lock_on_first_connect for g in mapped.groups] == [True, False]
    assert mapped.group(0) == Group("auto", lock_on_first_connect=True)
    assert mapped.group_index("manual") == 1 and mapped.group_index("none") is None


def test_sim_and_sim_document(table_factory: TableFactory) -> None:
    mapped = table_factory(
        [
            {"simId": "a", "imsi": "440100000000001", "status": "ready", "subscription": "plan-D",
             "virtualSubscribers": [{"imsi": "999990000000001"}]},
        ]
    )  # fmt: skip
    index = mapped.sim_by_id("a")
    assert index == 0
    sim = mapped.sim(index)
    assert (sim.imsi, sim.virtual, sim.status) == (440100000000001, False, Status.READY)
    assert mapped.sim_document(index) == {
        "simId": "a",
        "imsi": "440100000000001",
        "status": "ready",
        "subscription": "plan-D",
        "coverage": "global",
        "virtualSubscribers": [
            {"imsi": "999990000000001", "status": "active", "framedIp": "100.64.0.1"}
        ],
    }
    for call in (mapped.sim, mapped.sim_document):
        with pytest.raises(IndexError):
            call(1)


def test_empty_table() -> None:
    with Table.empty() as empty:
        assert (empty.sim_count, empty.imsi_count, empty.seq, empty.path) == (0, 0, 0, None)
        assert empty.groups == ()
        assert empty.find(440100000000001) is None
        assert empty.find(0) is None
        assert empty.sim_by_id("a") is None


def test_counts_and_identity(tmp_path: Path) -> None:
    with SnapshotWriter(tmp_path, 42, 123.25) as writer:
        writer.add_sim(440100000000001, "a", b'{"simId":"a"}', group=0, subscribers=[(1, False, 0)])
        path = writer.commit([group_document(Group("g"))])
    with Table.open(path) as mapped:
        assert (mapped.seq, mapped.created_at, mapped.path) == (42, 123.25, path)
        assert (mapped.sim_count, mapped.imsi_count, len(mapped.groups)) == (1, 2, 1)
        assert mapped.group_document(0) == group_document(Group("g"))


def test_find_is_a_plain_callable(table_factory: TableFactory) -> None:
    mapped = table_factory([{"simId": "a", "imsi": "440100000000001"}])
    find: Callable[[int], object] = mapped.find
    assert find(440100000000001) is not None


def _corrupt_cold(path: Path) -> None:
    with open(path, "r+b") as file:
        file.seek(ALIGN + 2)  # the cold section starts the file's second page
        file.write(b"#")


def test_cold_section_is_checked_before_first_use(tmp_path: Path) -> None:
    with SnapshotWriter(tmp_path, 1, 0.0) as writer:
        writer.add_sim(440100000000001, "a", b'{"simId":"a"}')
        path = writer.commit([])
    _corrupt_cold(path)
    with Table.open(path) as mapped:
        assert mapped.find(440100000000001) is not None, "the hot path never reads cold data"
        for use in (
            mapped.verify_cold,
            lambda: mapped.sim_document(0),
            lambda: mapped.sim_by_id("a"),
        ):
            with pytest.raises(SnapshotError, match="section 'cold' checksum mismatch"):
                use()
    with pytest.raises(SnapshotError, match="cold"):
        Table.open(path, verify_cold=True)


def test_load_newest_can_verify_cold_sections(tmp_path: Path) -> None:
    paths = []
    for seq in (1, 2):
        with SnapshotWriter(tmp_path, seq, 0.0) as writer:
            writer.add_sim(440100000000001, "a", b'{"simId":"a"}')
            paths.append(writer.commit([]))
    _corrupt_cold(paths[-1])
    lazy, skipped = load_newest(tmp_path)
    assert lazy is not None and (lazy.seq, skipped) == (2, [])
    lazy.close()
    strict, skipped = load_newest(tmp_path, verify_cold=True)
    assert strict is not None and strict.seq == 1
    assert [error.reason for error in skipped] == ["section 'cold' checksum mismatch"]
    strict.close()
