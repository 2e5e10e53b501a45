"""Sessions: the C table (core/service/_sessions.c) against its specification, PythonSessions.

Both run the same operations (records with short and long NAS, reads, sessions ended and
restarted, growth past the first allocation) and must answer the same at every step.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.service import sessions
from core.service.sessions import PythonSessions, Session, Sessions

try:
    from core.service._sessions import SessionTable
except ImportError:  # not built: only the specification runs
    SessionTable = None  # type: ignore[assignment,misc]

IMPLEMENTATIONS = [PythonSessions] + ([] if SessionTable is None else [SessionTable])
NAS_IP = bytes((4, 6, 192, 0, 2, 1))  # NAS-IP-Address 192.0.2.1 as received
NAS_LONG = bytes((32, 40)) + b"pgw-tokyo-01.example.net/apn/iot.xyz"  # past the inline 18 octets


@pytest.mark.parametrize("table", IMPLEMENTATIONS)
def test_a_record_reads_back_as_recorded(table: type[PythonSessions]) -> None:
    found = Sessions(table=table)
    found.record(
        440101234567890, 2**63 + 5, 999991234567890, 35387923425263, NAS_IP, 0x0A000001, 1.5
    )
    assert found.get(440101234567890) == Session(
        2**63 + 5, 999991234567890, 35387923425263, NAS_IP, 0x0A000001, 1.5, True
    )
    assert found.get(440101234567891) is None
    assert len(found) == 1
    assert found.online() == 1


@pytest.mark.parametrize("table", IMPLEMENTATIONS)
def test_a_new_session_replaces_the_old_one_and_a_long_nas_survives(
    table: type[PythonSessions],
) -> None:
    found = Sessions(table=table)
    found.record(440101234567890, 1, 440101234567890, 0, NAS_LONG, 0, 1.0)
    assert found.get(440101234567890).nas == NAS_LONG  # type: ignore[union-attr]
    found.record(440101234567890, 2, 440101234567890, -1, NAS_IP, 0, 2.0)
    assert found.get(440101234567890) == Session(2, 440101234567890, -1, NAS_IP, 0, 2.0, True)
    found.record(440101234567890, 3, 440101234567890, 0, b"", 0, 3.0)
    assert found.get(440101234567890).nas == b""  # type: ignore[union-attr]
    assert len(found) == 1


@pytest.mark.parametrize("table", IMPLEMENTATIONS)
def test_an_ended_session_is_offline_until_the_next_one(table: type[PythonSessions]) -> None:
    found = Sessions(table=table)
    assert found.end(440101234567890) is None  # no session yet
    found.record(440101234567890, 7, 440101234567890, 0, NAS_IP, 0, 1.0)
    ended = found.end(440101234567890)
    assert ended is not None and not ended.online and ended.session_id == 7
    assert found.end(440101234567890) is None  # already offline
    assert found.get(440101234567890) == ended
    assert found.online() == 0
    found.record(440101234567890, 8, 440101234567890, 0, NAS_IP, 0, 2.0)
    assert found.online() == 1


@pytest.mark.skipif(SessionTable is None, reason="core.service._sessions is not built")
@pytest.mark.parametrize(
    "arguments",
    [
        (0, 1, 1, 0, b"", 0, 1.0),  # 0 marks an empty slot: never a primary IMSI
        (-1, 1, 1, 0, b"", 0, 1.0),
        (2**64, 1, 1, 0, b"", 0, 1.0),
        (1, 1, 1, 0, "nas", 0, 1.0),
        (1, 1, 1, 0, b"", 0, "later"),
    ],
    ids=["zero", "negative", "too-big", "nas-not-bytes", "time-not-a-number"],
)
def test_the_c_table_refuses_what_it_cannot_store(arguments: tuple[object, ...]) -> None:
    assert SessionTable is not None
    table = SessionTable()
    with pytest.raises((ValueError, TypeError, OverflowError)):
        table.record(*arguments)  # type: ignore[arg-type]
    assert len(table) == 0


def test_the_server_uses_the_c_table_when_it_is_built() -> None:
    expected = PythonSessions if SessionTable is None else SessionTable
    if sessions.SessionTable is PythonSessions and SessionTable is not None:
        pytest.skip("SIMGATE_PURE_PYTHON picks the specification")
    assert sessions.SessionTable is expected


operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("record"),
            st.integers(1, 60),  # few SIMs: records replace each other
            st.integers(0, 2**64 - 1),
            st.integers(-1, 10**14 - 1),
            st.sampled_from([b"", NAS_IP, NAS_LONG, b"\x20\x14" + b"x" * 18]),
            st.integers(0, 2**32 - 1),
            st.floats(allow_nan=False),
        ),
        st.tuples(st.just("end"), st.integers(1, 60)),
        st.tuples(st.just("get"), st.integers(1, 60)),
    ),
    max_size=200,
)


@pytest.mark.skipif(SessionTable is None, reason="core.service._sessions is not built")
@settings(max_examples=200, deadline=None)
@given(operations)
def test_the_c_table_answers_as_the_specification(script: list[tuple[object, ...]]) -> None:
    spec, table = Sessions(table=PythonSessions), Sessions(table=SessionTable)
    for operation in script:
        if operation[0] == "record":
            _, sim, session_id, reported, nas, framed_ip, created = operation
            arguments = (440100000000000 + sim, session_id, sim, reported, nas, framed_ip, created)
            spec.record(*arguments)  # type: ignore[arg-type]
            table.record(*arguments)  # type: ignore[arg-type]
        elif operation[0] == "end":
            key = 440100000000000 + int(operation[1])  # type: ignore[call-overload]
            assert spec.end(key) == table.end(key)
        else:
            key = 440100000000000 + int(operation[1])  # type: ignore[call-overload]
            assert spec.get(key) == table.get(key)
        assert (len(spec), spec.online()) == (len(table), table.online())


@pytest.mark.skipif(SessionTable is None, reason="core.service._sessions is not built")
def test_the_c_table_grows_past_its_first_size_and_keeps_everything() -> None:
    table = SessionTable(expected=0)  # 1,024 slots at first: 5,000 SIMs double it thrice
    for number in range(1, 5001):
        table.record(
            440100000000000 + number, number, number, number, NAS_IP, number, float(number)
        )
    assert len(table) == 5000
    for number in range(1, 5001):
        assert table.get(440100000000000 + number) == (
            number,
            number,
            number,
            NAS_IP,
            number,
            float(number),
            True,
        )


@pytest.mark.skipif(SessionTable is None, reason="core.service._sessions is not built")
def test_the_c_table_keeps_everything_across_its_small_and_mapped_allocations() -> None:
    # 16,384 slots (1 MiB, from the allocator) at first; 60,000 SIMs take it to 131,072 slots
    # (8 MiB, mappings of their own, advised into huge pages) through two more doublings
    table = SessionTable(expected=10_000)
    keys = [440100000000000 + number * 7919 for number in range(1, 60_001)]
    for number, key in enumerate(keys, 1):
        table.record(key, number, key, number, NAS_IP, 0, float(number))
    assert len(table) == 60_000
    assert all(
        table.get(key) == (n, key, n, NAS_IP, 0, float(n), True) for n, key in enumerate(keys, 1)
    )
    assert table.get(440100000000000) is None


@pytest.mark.skipif(SessionTable is None, reason="core.service._sessions is not built")
def test_prefetch_is_a_hint_that_changes_nothing() -> None:
    table = SessionTable(expected=100_000)  # a mapped allocation
    table.record(440101234567890, 1, 440101234567890, 0, NAS_IP, 0, 1.0)
    before = table.get(440101234567890)
    keys = [0, 1, 440101234567890, 440109999999999, 2**64 - 1]
    table.prefetch(struct.pack(f"={len(keys)}Q", *keys) + b"\x01\x02\x03")  # a ragged tail
    table.prefetch(b"")
    assert table.get(440101234567890) == before and len(table) == 1
    assert SessionTable().prefetch(struct.pack("=Q", 440101234567890)) is None  # empty table
    with pytest.raises(TypeError):
        table.prefetch("not a buffer")  # type: ignore[arg-type]
    assert Sessions(table=PythonSessions).prefetch(struct.pack("=Q", 1)) is None
