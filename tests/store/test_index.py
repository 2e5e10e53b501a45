"""core/store/_index.c against its specification, finder.python_finder: the same Subscriber (or
None) for every IMSI of a table, for misses, through the overlay, and a closed map refused."""

from __future__ import annotations

import struct
import tempfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.store import finder
from core.store.finder import python_finder
from core.store.format import ALLOW_UNREPORTED, LOCK_ON_FIRST_CONNECT
from core.store.records import Status, Subscriber
from core.store.snapshot import SnapshotWriter
from core.store.table import Table
from tests.conftest import TableFactory
from tests.subscribers import SIMS

pytestmark = pytest.mark.skipif(
    finder._index is None, reason="core.store._index is not built (or SIMGATE_PURE_PYTHON)"
)


def both(mapped: Table, overlay: dict[int, Subscriber] | None = None) -> tuple[object, object]:
    """The C finder and the Python one over the same map (and overlay)."""
    assert finder._index is not None
    changed = {} if overlay is None else overlay
    arguments = (mapped._buffer, mapped._imsi_at, mapped._imsi_slots, mapped._records_at)
    c_find = finder._index.Finder(*arguments, finder._STATUSES, Subscriber, changed)
    return c_find, python_finder(*arguments, changed)


SIM_LINES = [line for line in SIMS if "imsi" in line]
MISSES = [0, 1, -1, 440100000000000, 999999999999999, 10**15, 2**63, 2**64 - 1, 2**64, 2**70]


def test_every_provisioned_imsi_and_the_misses_agree(table_factory: TableFactory) -> None:
    mapped = table_factory(SIMS)
    c_find, py_find = both(mapped)
    imsis = [int(line["imsi"]) for line in SIM_LINES]
    imsis += [int(sub["imsi"]) for line in SIM_LINES for sub in line.get("virtualSubscribers", ())]
    for imsi in imsis + MISSES:
        found = c_find(imsi)  # type: ignore[operator]
        assert found == py_find(imsi)  # type: ignore[operator]
        assert type(found) is type(py_find(imsi))  # type: ignore[operator]
    assert all(c_find(imsi) is not None for imsi in imsis)  # type: ignore[operator]
    assert mapped.find is not None and type(mapped.find).__name__ == "Finder"


@settings(max_examples=40, deadline=None)
@given(
    records=st.lists(
        st.tuples(
            st.integers(1, 10**15 - 1),  # IMSI
            st.integers(0, 10**14 - 1),  # lock
            st.booleans(),  # allowUnreported
            st.booleans(),  # lockOnFirstConnect
            st.sampled_from(list(Status)),
            st.integers(0, 2**32 - 1),  # framed IP
        ),
        min_size=1,
        max_size=30,
        unique_by=lambda record: record[0],
    ),
    probes=st.lists(st.integers(-(2**65), 2**65), max_size=30),
)
def test_random_tables_agree(
    records: list[tuple[int, int, bool, bool, Status, int]], probes: list[int]
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        with SnapshotWriter(directory, 1, 0.0) as writer:
            for n, (imsi, lock, allow, first, status, framed) in enumerate(records):
                writer.add_sim(
                    imsi,
                    f"sim-{n}",
                    b'{"simId":"sim-%d"}' % n,
                    status=status,
                    lock=lock,
                    flags=(ALLOW_UNREPORTED if allow else 0)
                    | (LOCK_ON_FIRST_CONNECT if first else 0),
                    framed_ip=framed,
                    subscribers=[(imsi + 10**15, n % 2 == 0, framed)] if n % 3 == 0 else (),
                )
            path = writer.commit([])
        with Table.open(path) as mapped:
            c_find, py_find = both(mapped)
            imsis = [record[0] for record in records]
            for imsi in imsis + [imsi + 10**15 for imsi in imsis] + probes:
                assert c_find(imsi) == py_find(imsi)  # type: ignore[operator]


def test_the_overlay_answers_first(table_factory: TableFactory) -> None:
    mapped = table_factory(SIMS)
    imsi = int(SIM_LINES[0]["imsi"])
    overlay: dict[int, Subscriber] = {}
    c_find, py_find = both(mapped, overlay)
    before = c_find(imsi)  # type: ignore[operator]
    assert before is not None
    changed = before._replace(lock=12345678901234)
    overlay[imsi] = changed  # later changes to the overlay are seen
    assert c_find(imsi) is changed  # type: ignore[operator]
    assert py_find(imsi) is changed  # type: ignore[operator]


def test_a_closed_map_is_refused_not_read(table_factory: TableFactory) -> None:
    mapped = table_factory(SIMS)
    c_find, _ = both(mapped)
    del mapped.find
    mapped.close()
    with pytest.raises(ValueError, match="closed"):
        c_find(int(SIM_LINES[0]["imsi"]))  # type: ignore[operator]


def test_prefetch_is_a_hint_that_changes_nothing(table_factory: TableFactory) -> None:
    mapped = table_factory(SIMS)
    c_find, py_find = both(mapped)
    imsis = [int(line["imsi"]) for line in SIM_LINES]
    keys = [key for key in imsis + MISSES if 0 <= key < 2**64]
    c_find.prefetch(struct.pack(f"={len(keys)}Q", *keys) + b"\x07")  # type: ignore[attr-defined]
    for imsi in imsis + MISSES:
        assert c_find(imsi) == py_find(imsi)  # type: ignore[operator]
    with pytest.raises(TypeError):
        c_find.prefetch(12)  # type: ignore[attr-defined]
    del mapped.find
    mapped.close()
    assert c_find.prefetch(struct.pack("=Q", imsis[0])) is None  # type: ignore[attr-defined]
