"""Provisioning import: validation naming line and field, CSV = JSON Lines, nothing on error."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.provision import (
    COVERAGES,
    MAX_SHOWN,
    ProvisionError,
    SimRow,
    VirtualRow,
    import_file,
    reader,
    write_snapshot,
)
from core.store.records import NO_GROUP, Group, Status
from core.store.table import Table

DEMO = Path(__file__).parent.parent / "config" / "demo.jsonl"
IMEI = "353879234252633"
IMEI_RULE = "is not an IMEI (14 digits, 16, or 15 ending in its Luhn digit or 0)"
GROUP = {"kind": "group", "groupId": "g"}


def sim(**fields: Any) -> dict[str, Any]:
    return {"simId": "s1", "imsi": "440100000000001", **fields}


def jsonl(tmp_path: Path, lines: list[Any], name: str = "in.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def failing(source: Path, data_dir: Path) -> ProvisionError:
    with pytest.raises(ProvisionError) as caught:
        import_file(source, data_dir, seq=1, now=0.0)
    assert list((data_dir / "snapshots").iterdir()) == [], "nothing may be written"
    return caught.value


BAD_LINES = [
    # (the line, field named, message) -- the line is line 3: a group, a blank line, then it.
    ({"imsi": "440100000000001"}, "simId", "required"),
    ({"simId": "s1"}, "imsi", "required"),
    (sim(simId="s 1"), "simId", "'s 1' is not a name (1-64 letters, digits, '.', '_', '-')"),
    (sim(imsi="44010000000001"), "imsi", "'44010000000001' is not an IMSI (a string of 15 digits)"),
    (sim(imsi=440100000000001), "imsi", "440100000000001 is not an IMSI (a string of 15 digits)"),
    (sim(status="sleeping"), "status", "'sleeping' is not one of active, ready, standby"),
    (sim(subscription=""), "subscription", "'' is not a name"),
    (sim(coverage="mars"), "coverage", "'mars' is not one of jp, global"),
    (sim(groupId="nope"), "groupId", "group 'nope' is not defined in this file"),
    (sim(imeiLock={"imei": "12345"}), "imeiLock.imei", f"'12345' {IMEI_RULE}"),
    (sim(imeiLock="353879234252634"), "imeiLock", f"'353879234252634' {IMEI_RULE}"),
    (sim(imeiLock="000000000000000"), "imeiLock", f"'000000000000000' {IMEI_RULE}"),
    (sim(imeiLock=f"{IMEI}|anon"), "imeiLock", "only '|ANONYMOUS' may follow the IMEI"),
    (
        sim(imeiLock={"imei": f"{IMEI}|ANONYMOUS", "allowUnreported": False}),
        "imeiLock.imei",
        "contradicts allowUnreported false",
    ),
    (
        sim(imeiLock={"imei": IMEI, "allowUnreported": "yes"}),
        "imeiLock.allowUnreported",
        "'yes' is not true or false",
    ),
    (sim(imeiLock={"imei": IMEI, "lock": 1}), "imeiLock.lock", "unknown field"),
    (sim(imeiLock={"allowUnreported": True}), "imeiLock.imei", "required"),
    (sim(imeiLock=353879234252633), "imeiLock", "is not {imei, allowUnreported}"),
    (sim(lockOnFirstConnect="true"), "lockOnFirstConnect", "'true' is not true or false"),
    (sim(framedIp="10.0.0"), "framedIp", "'10.0.0' is not a dotted IPv4 address"),
    (sim(framedIp="10.0.0.256"), "framedIp", "'10.0.0.256' is not a usable IPv4 address"),
    (sim(framedIp="0.0.0.0"), "framedIp", "'0.0.0.0' is not a usable IPv4 address"),
    (
        sim(subscription="planP1", virtualSubscribers=[{"imsi": "999990000000001"}]),
        "virtualSubscribers",
        "subscription 'planP1' cannot hold virtual subscribers (only plan-D, plan-DU",
    ),
    (
        sim(virtualSubscribers=[{"imsi": "440100000000009"}]),
        "virtualSubscribers[0].imsi",
        "'440100000000009' is not a virtual IMSI (it begins 99999)",
    ),
    (
        sim(virtualSubscribers=[{"imsi": "999990000000001"}, {"imsi": "9999900"}]),
        "virtualSubscribers[1].imsi",
        "'9999900' is not an IMSI",
    ),
    (
        sim(virtualSubscribers=[{"imsi": "999990000000001", "status": "ready"}]),
        "virtualSubscribers[0].status",
        "'ready' is not active or terminated",
    ),
    (
        sim(virtualSubscribers=[{"imsi": "999990000000001", "framedIp": "x"}]),
        "virtualSubscribers[0].framedIp",
        "'x' is not a dotted IPv4 address",
    ),
    (
        sim(virtualSubscribers=[{"imsi": "999990000000001", "x": 1}]),
        "virtualSubscribers[0].x",
        "unknown field",
    ),
    (sim(virtualSubscribers="999990000000001"), "virtualSubscribers", "is not a list"),
    (sim(virtualSubscribers=[{"status": "active"}]), "virtualSubscribers[0].imsi", "required"),
    (sim(imeiLock={"imei": 353879234252633}), "imeiLock.imei", "is not a string"),
    (sim(virtualSubscribers=["999990000000001"]), "virtualSubscribers[0]", "is not a virtual"),
    (
        sim(imsi="999990000000009", status="ready"),
        "status",
        "a virtual SIM is active or terminated, not 'ready'",
    ),
    (
        sim(imsi="999990000000009", virtualSubscribers=[{"imsi": "999990000000001"}]),
        "virtualSubscribers",
        "a virtual SIM cannot hold virtual subscribers",
    ),
    (sim(colour="red"), "colour", "unknown field for a sim"),
    (sim(kind="router"), "kind", "'router' is not 'sim' or 'group'"),
    ({"kind": "group"}, "groupId", "required"),
    ({**GROUP, "groupId": "g2", "imsi": "1"}, "imsi", "unknown field for a group"),
    ({**GROUP, "chap": {"username": "dev"}}, "chap.password", "required"),
    ({**GROUP, "chap": {"username": "", "password": "x"}}, "chap.username", "'' is not a non-emp"),
    ({**GROUP, "chap": "dev:pw"}, "chap", "'dev:pw' is not {username, password}"),
    (
        {**GROUP, "onImeiLockRejected": ["log", "email"]},
        "onImeiLockRejected[1]",
        "'email' is not one of log, deactivate, webhook",
    ),
    ({**GROUP, "onImeiLockRejected": ["log", "log"]}, "onImeiLockRejected[1]", "is repeated"),
    (
        {**GROUP, "onImeiLockRejected": ["webhook"]},
        "webhookUrl",
        "required when onImeiLockRejected has 'webhook'",
    ),
    ({**GROUP, "webhookUrl": "ftp://x"}, "webhookUrl", "'ftp://x' is not an http(s) URL"),
    ({**GROUP, "webhookUrl": "http://[::1"}, "webhookUrl", "is not an http(s) URL"),
    (
        {**GROUP, "vpg": {"rendezvousPoint": "paris"}},
        "vpg.rendezvousPoint",
        "'paris' is not one of tokyo, oregon, frankfurt, sydney",
    ),
    ({**GROUP, "lockOnFirstConnect": 1}, "lockOnFirstConnect", "1 is not true or false"),
]


@pytest.mark.parametrize(
    ("line", "field", "message"), BAD_LINES, ids=[f"{f}:{m[:24]}" for _, f, m in BAD_LINES]
)
def test_each_error_names_line_and_field(
    tmp_path: Path, line: dict[str, Any], field: str, message: str
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(f'{{"kind": "group", "groupId": "g0"}}\n\n{json.dumps(line)}\n')
    error = failing(source, tmp_path / "data")
    assert [(e.line, e.field) for e in error.errors] == [(3, field)]
    assert message in error.errors[0].message
    assert f"line 3: field '{field}': " in str(error)


def test_error_text_matches_the_operator_format(tmp_path: Path) -> None:
    source = jsonl(tmp_path, [GROUP, sim(imeiLock={"imei": "12345"})])
    assert str(failing(source, tmp_path / "data").errors[0]) == (
        f"line 2: field 'imeiLock.imei': '12345' {IMEI_RULE}"
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("{not json", "not JSON (Expecting property name enclosed in double quotes at column 2)"),
        ("[1, 2]", "not a JSON object: [1, 2]"),
        ('"sim"', "not a JSON object: 'sim'"),
        ('{"simId": "\xff"}', "not UTF-8"),
    ],
)
def test_lines_that_are_not_objects(tmp_path: Path, raw: str, message: str) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(b'{"kind": "group", "groupId": "g"}\n' + raw.encode("latin-1") + b"\n")
    error = failing(source, tmp_path / "data")
    assert error.errors[0].line == 2
    assert message in error.errors[0].message


def test_errors_are_all_counted_and_the_first_shown_in_line_order(tmp_path: Path) -> None:
    lines = [sim(simId=f"s{n}", imsi=f"44010000000{n:04d}", status="x") for n in range(60)]
    lines.append(sim(simId="last", imsi="440100000009999", groupId="late"))
    error = failing(jsonl(tmp_path, lines), tmp_path / "data")
    assert error.total == 61
    assert len(error.errors) == MAX_SHOWN
    assert [e.line for e in error.errors] == list(range(1, MAX_SHOWN + 1))
    assert str(error).splitlines()[0].endswith("61 errors, nothing imported")
    assert str(error).endswith("... and 11 more")


def test_several_errors_on_one_line_are_all_reported(tmp_path: Path) -> None:
    error = failing(jsonl(tmp_path, [sim(status="x", coverage="y", extra=1)]), tmp_path / "data")
    assert [(e.line, e.field) for e in error.errors] == [
        (1, "status"),
        (1, "coverage"),
        (1, "extra"),
    ]


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (
            [sim(), sim(imsi="440100000000002"), sim(simId="s3", imsi="440100000000003")],
            [(2, "simId", "'s1' is also on line 1")],
        ),
        (
            [sim(), sim(simId="s2")],
            [(2, "imsi", "'440100000000001' is also on line 1")],
        ),
        (
            [
                sim(virtualSubscribers=[{"imsi": "999990000000001"}]),
                sim(simId="s2", imsi="999990000000001"),
            ],
            [(2, "imsi", "'999990000000001' is also on line 1")],
        ),
        (
            [
                sim(simId="s2", imsi="999990000000001"),
                sim(virtualSubscribers=[{"imsi": "999990000000001"}]),
            ],
            [(2, "virtualSubscribers", "'999990000000001' is also on line 1")],
        ),
        (
            [sim(virtualSubscribers=[{"imsi": "999990000000001"}, {"imsi": "999990000000001"}])],
            [(1, "virtualSubscribers", "'999990000000001' is also on this line")],
        ),
        (
            [sim(framedIp="10.0.0.1"),
             sim(simId="s2", imsi="440100000000002", framedIp="10.0.0.1")],
            [(2, "framedIp", "'10.0.0.1' is also on line 1")],
        ),
        (
            [
                sim(virtualSubscribers=[{"imsi": "999990000000001"}]),
                sim(simId="s2", imsi="440100000000002", framedIp="100.64.0.1"),
            ],
            [(2, "framedIp", "'100.64.0.1' is also on line 1")],
        ),
        (
            [GROUP, {**GROUP, "lockOnFirstConnect": True}],
            [(2, "groupId", "'g' is also defined on line 1")],
        ),
    ],
    ids=["simId", "imsi", "virtual-then-sim", "sim-then-virtual", "same-line", "framedIp",
         "explicit-after-auto", "group"],
)  # fmt: skip
def test_repeats_name_both_lines(
    tmp_path: Path, lines: list[dict[str, Any]], expected: list[tuple[int, str, str]]
) -> None:
    error = failing(jsonl(tmp_path, lines), tmp_path / "data")
    assert [(e.line, e.field, e.message) for e in error.errors] == expected


def test_a_group_may_be_defined_after_its_sims(table_factory: Any) -> None:
    table = table_factory([sim(groupId="late"), {"kind": "group", "groupId": "late"}])
    found = table.find(440100000000001)
    assert found is not None and table.group(found.group).group_id == "late"


def test_framed_ips_are_assigned_in_file_order_skipping_used_ones(table_factory: Any) -> None:
    table = table_factory(
        [
            sim(framedIp="100.64.0.1"),
            sim(simId="s2", imsi="440100000000002",
                virtualSubscribers=[{"imsi": "999990000000001"},
                                    {"imsi": "999990000000002", "framedIp": "10.1.1.1"},
                                    {"imsi": "999990000000003", "status": "terminated"}]),
            sim(simId="s3", imsi="999990000000009"),
        ]
    )  # fmt: skip
    framed = [table.find(imsi) for imsi in (999990000000001, 999990000000002, 999990000000003)]
    assert [f.framed_ip for f in framed if f] == [0x64400002, 0x0A010101, 0x64400003]
    alone = table.find(999990000000009)
    assert alone is not None
    assert (alone.framed_ip, alone.virtual, alone.primary_imsi) == (0x64400004, True, alone.imsi)


def test_import_result_and_defaults(tmp_path: Path) -> None:
    lines = [
        {"kind": "group", "groupId": "fleet", "chap": {"username": "dev", "password": "pw"},
         "lockOnFirstConnect": True, "onImeiLockRejected": ["log", "webhook"],
         "webhookUrl": "https://hooks.example/imei", "vpg": {"rendezvousPoint": "oregon"}},
        sim(groupId="fleet", imeiLock=f"{IMEI}|ANONYMOUS",
            virtualSubscribers=[{"imsi": "999990000000001", "status": "terminated"}]),
        {"kind": "sim", "simId": "s2", "imsi": "440100000000002", "status": "suspended",
         "imeiLock": {"imei": "3538792342526301"}},
    ]  # fmt: skip
    result = import_file(jsonl(tmp_path, lines), tmp_path / "data", seq=5, now=99.5)
    assert result[:3] == (2, 3, 1)
    assert result.snapshot_path.name == "snapshot-00000000000000000005.sgs"
    assert result.seconds >= 0
    with Table.open(result.snapshot_path) as table:
        assert (table.seq, table.created_at) == (5, 99.5)
        assert table.groups == (Group("fleet", b"dev", b"pw", True, ("log", "webhook"), "oregon"),)
        assert table.group_document(0)["webhookUrl"] == "https://hooks.example/imei"
        first, second = table.find(440100000000001), table.find(440100000000002)
        assert first is not None and second is not None
        assert (first.lock, first.allow_unreported, first.status) == (
            35387923425263, True, Status.ACTIVE
        )  # fmt: skip
        assert (second.lock, second.allow_unreported, second.status) == (
            35387923425263, False, Status.SUSPENDED
        )  # fmt: skip
        assert table.sim_document(1)["imeiLock"] == {
            "imei": "3538792342526301",
            "allowUnreported": False,
        }


JSONL_LINES: list[dict[str, Any]] = [
    {"kind": "group", "groupId": "fleet", "chap": {"username": "dev", "password": "pw"},
     "onImeiLockRejected": ["log", "webhook"], "webhookUrl": "https://hooks.example/x",
     "vpg": {"rendezvousPoint": "sydney"}, "lockOnFirstConnect": True},
    {"simId": "a", "imsi": "440100000000001", "status": "ready", "subscription": "plan-K",
     "coverage": "jp", "groupId": "fleet", "imeiLock": {"imei": IMEI, "allowUnreported": True},
     "lockOnFirstConnect": False, "framedIp": "10.0.0.7",
     "virtualSubscribers": [{"imsi": "999990000000001", "status": "terminated"},
                            {"imsi": "999990000000002", "framedIp": "10.9.9.9"}]},
    {"kind": "sim", "simId": "b", "imsi": "440100000000002", "imeiLock": f"{IMEI}|ANONYMOUS",
     "lockOnFirstConnect": True},
    {"simId": "c", "imsi": "999990000000003", "status": "terminated"},
]  # fmt: skip

CSV_TEXT = """\
kind,simId,imsi,status,subscription,coverage,groupId,imei,allowUnreported,lockOnFirstConnect,\
framedIp,virtualSubscribers,chapUsername,chapPassword,onImeiLockRejected,webhookUrl,rendezvousPoint
group,,,,,,fleet,,,TRUE,,,dev,pw,log;webhook,https://hooks.example/x,sydney
sim,a,440100000000001,ready,plan-K,jp,fleet,353879234252633,true,false,10.0.0.7,\
999990000000001:terminated; 999990000000002::10.9.9.9,,,,,
,b,440100000000002,,,,,353879234252633|ANONYMOUS,,yes,,,,,,,

,c,999990000000003,terminated,,,,,,,,,,,,,
"""


def test_csv_and_json_lines_give_the_same_table(tmp_path: Path) -> None:
    from_json = import_file(jsonl(tmp_path, JSONL_LINES), tmp_path / "j", seq=1, now=0.0)
    source = tmp_path / "in.CSV"
    source.write_bytes(b"\xef\xbb\xbf" + CSV_TEXT.encode())
    from_csv = import_file(source, tmp_path / "c", seq=1, now=0.0)
    assert from_json[:3] == from_csv[:3] == (3, 5, 1)
    imsis = [440100000000001, 440100000000002, 999990000000001, 999990000000002, 999990000000003]
    with Table.open(from_json.snapshot_path) as one, Table.open(from_csv.snapshot_path) as two:
        assert one.groups == two.groups
        assert one.group_document(0) == two.group_document(0)
        assert [one.find(i) for i in imsis] == [two.find(i) for i in imsis]
        assert all(one.find(i) for i in imsis)
        documents = [one.sim_document(n) for n in range(3)]
        assert documents == [two.sim_document(n) for n in range(3)]
        assert [one.sim_by_id(s) for s in "abc"] == [two.sim_by_id(s) for s in "abc"] == [0, 1, 2]


@pytest.mark.parametrize(
    ("row", "line", "field", "message"),
    [
        ("sim,a,440100000000001,12345,,,", 2, "imei", f"'12345' {IMEI_RULE}"),
        ("sim,a,440100000000001,,true,,", 2, "imei", "required"),
        (f"sim,a,440100000000001,{IMEI},maybe,,", 2, "allowUnreported", "'maybe' is not true"),
        ("sim,a,440100000000001,,,2,", 2, "lockOnFirstConnect", "'2' is not true or false"),
        ("sim,a,440100000000001,,,,99999:bad", 2, "virtualSubscribers", "is not an IMSI"),
        ("sim,a,440100000000001,,,,1:2:3:4", 2, "virtualSubscribers", "is not a virtual"),
        ("sim,a,440100000000001,,,", 2, None, "6 cells, the header has 7 columns"),
        ('sim,a,"440100000000001\n",x,,,', 3, "imei", f"'x' {IMEI_RULE}"),
    ],
)
def test_csv_errors_name_the_column(
    tmp_path: Path, row: str, line: int, field: str | None, message: str
) -> None:
    source = tmp_path / "in.csv"
    header = "kind,simId,imsi,imei,allowUnreported,lockOnFirstConnect,virtualSubscribers"
    source.write_text(f"{header}\n{row}\n")
    error = failing(source, tmp_path / "data")
    assert [(e.line, e.field) for e in error.errors][:1] == [(line, field)]
    assert message in error.errors[0].message


def test_csv_group_columns_and_unknown_columns(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text("kind,groupId,chapUsername,colour,groupId\ngroup,g,dev,,g\n")
    error = failing(source, tmp_path / "data")
    assert [(e.line, e.field, e.message) for e in error.errors] == [
        (1, "colour", "unknown column"),
        (1, "groupId", "repeated column"),
    ]
    source.write_text("kind,groupId,chapUsername\ngroup,g,dev\n")
    error = failing(source, tmp_path / "data")
    assert [(e.line, e.field) for e in error.errors] == [(2, "chapPassword")]


def test_progress_is_reported_in_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reader, "_PROGRESS_EVERY", 2)
    lines = [sim(simId=f"s{n}", imsi=f"44010000000{n:04d}") for n in range(5)]
    source = jsonl(tmp_path, lines)
    calls: list[tuple[int, int]] = []
    import_file(source, tmp_path / "data", seq=1, now=0.0, progress=lambda *a: calls.append(a))
    size = source.stat().st_size
    assert [total for _, total in calls] == [size] * 3
    assert calls[-1] == (size, size)
    assert calls[0][0] < calls[1][0] < size


def test_demo_data_imports_and_covers_the_lock_table(tmp_path: Path) -> None:
    result = import_file(DEMO, tmp_path, seq=1, now=0.0)
    with Table.open(result.snapshot_path) as table:
        sims = [table.sim(n) for n in range(table.sim_count)]
        assert {s.status for s in sims} == set(Status)
        locks = {(s.lock != 0, s.allow_unreported) for s in sims}
        assert {(False, False), (True, True), (True, False)} <= locks
        chap = table.group(table.group_index("fleet-chap") or 0)
        assert (chap.chap_username, chap.chap_password) == (b"dev", b"s3cret")
        assert any(g.lock_on_first_connect for g in table.groups)
        virtuals = [table.find(999990000000001), table.find(999990000000002)]
        assert [(v.terminated, v.primary_imsi) for v in virtuals if v] == [
            (False, 440100000000011),
            (True, 440100000000011),
        ]


def test_write_snapshot_from_rows(tmp_path: Path) -> None:
    rows = [
        SimRow("a", 440100000000001, Status.ACTIVE, 0, 35387923425263, True),
        SimRow("b", 440100000000002, subscribers=(VirtualRow(999990000000001, True, 7),)),
    ]
    path = write_snapshot(tmp_path, rows, [Group("g", lock_on_first_connect=True)], seq=3)
    with Table.open(path) as table:
        first, virtual = table.find(440100000000001), table.find(999990000000001)
        assert first is not None and virtual is not None
        assert (first.group, first.lock, first.lock_on_first_connect) == (0, 35387923425263, False)
        assert table.group(first.group).lock_on_first_connect, "the group's flag stays its own"
        assert (virtual.sim_index, virtual.terminated, virtual.framed_ip) == (1, True, 7)
        assert table.sim_document(0)["imeiLock"] == {"imei": IMEI, "allowUnreported": True}
        assert table.sim(1).group == NO_GROUP
    with pytest.raises(ValueError, match="duplicate"):
        write_snapshot(tmp_path, [*rows, rows[0]], [Group("g")], seq=4)
    with pytest.raises(ValueError, match="no group 0"):
        write_snapshot(tmp_path, rows, seq=4)
    with pytest.raises(ValueError, match="not a name"):
        write_snapshot(tmp_path, [SimRow('a"b', 440100000000001)], seq=4)
    assert sorted(p.name for p in (tmp_path / "snapshots").iterdir()) == [path.name]


LOCKS = st.sampled_from(
    [None, IMEI, f"{IMEI}|ANONYMOUS", {"imei": "35387923425263"}, {"imei": "3538792342526301",
     "allowUnreported": True}, {"imei": "353879234252640", "allowUnreported": False}]
)  # fmt: skip


@st.composite
def sim_lines(draw: st.DrawFn) -> list[dict[str, Any]]:
    count = draw(st.integers(1, 8))
    imsis = draw(
        st.sets(st.integers(440100000000000, 440199999999999), min_size=count, max_size=count)
    )
    lines: list[dict[str, Any]] = [{"kind": "group", "groupId": "g"}]
    for n, imsi in enumerate(sorted(imsis)):
        line: dict[str, Any] = {"simId": f"sim-{n}", "imsi": str(imsi)}
        optional = {
            "status": st.sampled_from(["active", "ready", "standby", "inactive", "suspended"]),
            "subscription": st.sampled_from(["plan01s", "plan-D", "planP1"]),
            "coverage": st.sampled_from(COVERAGES),
            "groupId": st.just("g"),
            "imeiLock": LOCKS,
            "lockOnFirstConnect": st.booleans(),
            "framedIp": st.just(f"10.0.{n}.1"),
        }
        for name, values in optional.items():
            if draw(st.booleans()):
                line[name] = draw(values)
        if line.get("subscription", "plan01s") != "planP1" and draw(st.booleans()):
            subscriber = {"imsi": f"99999{imsi % 10**10:010d}"}
            line["virtualSubscribers"] = [subscriber]
        lines.append(line)
    return lines


@settings(max_examples=30, deadline=None)
@given(lines=sim_lines())
def test_a_sim_document_is_a_provisioning_line_that_imports_to_itself(
    lines: list[dict[str, Any]],
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        first = import_file(jsonl(root, lines), root / "one", seq=1, now=0.0).snapshot_path
        with Table.open(first) as table:
            documents = [table.sim_document(n) for n in range(table.sim_count)]
            subscribers = [table.find(int(line["imsi"])) for line in lines[1:]]
        again = import_file(
            jsonl(root, [lines[0], *documents], "again.jsonl"), root / "two", 1, 0.0
        )
        with Table.open(again.snapshot_path) as table:
            assert [table.sim_document(n) for n in range(table.sim_count)] == documents
            assert [table.find(int(line["imsi"])) for line in lines[1:]] == subscribers
