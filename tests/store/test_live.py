"""LiveTable: what each write does to find() and the documents, and what check() refuses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from core.policy.admission import decide
from core.policy.verdict import AdmissionRequest, Effect, Reason
from core.store.commands import (
    Command,
    CommandError,
    PutGroup,
    PutSim,
    SetLock,
    SetStatus,
    UnknownSim,
    UnsetLock,
    parse_lock,
)
from core.store.live import LiveTable
from core.store.records import NO_GROUP, Group, Status
from core.store.table import Table
from tests.conftest import TableFactory
from tests.subscribers import LOCKED_IMEI, OTHER_DEVICE, SIMS

IDENTITY = 35387923425263
OTHER_IMEI = "490154203237518"
OTHER_IDENTITY = 49015420323751
NEW_SIM = {"simId": "new", "imsi": "440100000000100"}

Live = Callable[[], LiveTable]


@pytest.fixture
def live(table_factory: TableFactory) -> Live:
    def build() -> LiveTable:
        return LiveTable(table_factory(SIMS))

    return build


def _write(table: LiveTable, command: Command) -> bool:
    return table.apply(table.seq + 1, table.check(command))


def test_a_fresh_live_table_answers_as_its_snapshot(live: Live) -> None:
    table = live()
    base: Table = table.base
    for n in range(1, 14):
        assert table.find(440100000000000 + n) == base.find(440100000000000 + n)
    assert table.find(440100000000099) is None
    assert (table.seq, table.sim_count, table.imsi_count) == (1, 13, 16)
    assert table.groups == base.groups
    assert table.sim_ids() == [str(n) for n in range(1, 14)]
    assert table.sim_ids(11) == ["12", "13"] and table.sim_ids(2, 2) == ["3", "4"]
    assert table.sim_document("9") == base.sim_document(8)
    assert table.sim_document("nope") is None and table.sim("nope") is None
    assert table.changes() == []


def test_set_lock_reaches_the_sim_and_its_virtual_subscribers(live: Live) -> None:
    table = live()
    assert _write(table, parse_lock("12", f"{OTHER_IMEI}|ANONYMOUS"))
    for imsi in (440100000000012, 999990000000001, 999990000000002):
        sub = table.find(imsi)
        assert sub is not None
        assert (sub.lock, sub.allow_unreported, sub.sim_index) == (OTHER_IDENTITY, True, 11)
    terminated = table.find(999990000000002)
    assert terminated is not None and terminated.terminated, "a subscriber's own status stays"
    document = table.sim_document("12")
    assert document is not None
    assert document["imeiLock"] == {"imei": OTHER_IMEI, "allowUnreported": True}
    assert table.find(440100000000013) == table.base.find(440100000000013), "others untouched"
    assert table.seq == 2


def test_unset_lock(live: Live) -> None:
    table = live()
    assert _write(table, UnsetLock("3"))
    sub = table.find(440100000000003)
    assert sub is not None and (sub.lock, sub.allow_unreported) == (0, False)
    document = table.sim_document("3")
    assert document is not None and "imeiLock" not in document
    assert _write(table, UnsetLock("3")), "unlocking an unlocked SIM is allowed"


def test_writes_to_a_sim_read_back_in_order_before_and_after_its_document_is_read(
    live: Live,
) -> None:
    table = live()
    original = table.sim_document("3")
    assert original is not None and "imeiLock" in original
    assert _write(table, UnsetLock("3"))
    assert _write(table, SetStatus("3", Status.SUSPENDED))
    assert _write(table, parse_lock("3", OTHER_IMEI))
    expected = {
        **original,
        "status": "suspended",
        "imeiLock": {"imei": OTHER_IMEI, "allowUnreported": False},
    }
    assert table.sim_document("3") == expected  # the first read builds the document
    assert _write(table, UnsetLock("3"))  # and later writes change what was built
    del expected["imeiLock"]
    assert table.sim_document("3") == expected
    assert table.sim_id(2) == "3" and table.sim_ids(2, 1) == ["3"]
    (change,) = table.changes()
    assert (change.sim_index, change.document) == (2, expected)
    sub = table.find(440100000000003)
    assert sub is not None and (sub.lock, sub.status) == (0, Status.SUSPENDED)


def test_set_status(live: Live) -> None:
    table = live()
    assert _write(table, SetStatus("12", Status.SUSPENDED))
    for imsi in (440100000000012, 999990000000001):
        sub = table.find(imsi)
        assert sub is not None and sub.status == Status.SUSPENDED
    document = table.sim_document("12")
    assert document is not None and document["status"] == "suspended"
    sim = table.sim("12")
    assert sim is not None and sim.imsi == 440100000000012


def test_put_sim(live: Live) -> None:
    table = live()
    document = {
        "simId": "new",
        "imsi": "440100000000100",
        "status": "ready",
        "subscription": "plan-K",
        "groupId": "first",
        "imeiLock": f"{LOCKED_IMEI}|ANONYMOUS",
        "virtualSubscribers": [{"imsi": "999990000000100"}],
    }
    checked = table.check(PutSim(document))
    assert isinstance(checked, PutSim)
    assert checked.document == {
        "simId": "new",
        "imsi": "440100000000100",
        "status": "ready",
        "subscription": "plan-K",
        "coverage": "global",
        "groupId": "first",
        "imeiLock": {"imei": LOCKED_IMEI, "allowUnreported": True},
        "virtualSubscribers": [
            {"imsi": "999990000000100", "status": "active", "framedIp": "100.64.0.4"}
        ],
    }, "defaults and the next free framed IP (import gave .1-.3) filled in"
    assert table.apply(2, checked)
    primary, virtual = table.find(440100000000100), table.find(999990000000100)
    assert primary is not None and virtual is not None
    assert primary == (440100000000100, 13, False, False, 0, 440100000000100, Status.READY, 1,
                       IDENTITY, True, False)  # fmt: skip
    assert virtual == (999990000000100, 13, True, False, 0x64400004, 440100000000100,
                       Status.READY, 1, IDENTITY, True, False)  # fmt: skip
    assert (table.sim_count, table.imsi_count) == (14, 18)
    assert table.sim_ids(12) == ["13", "new"]
    assert (table.sim_id(13), table.sim_id(0), table.sim_index("new")) == ("new", "1", 13)
    assert table.sim_document("new") == checked.document
    assert [change.sim_index for change in table.changes()] == [13]


def test_a_standalone_virtual_sim_gets_a_framed_ip_and_its_status_is_its_imsis(
    live: Live,
) -> None:
    table = live()
    assert _write(table, PutSim({"simId": "v", "imsi": "999990000000200"}))
    sub = table.find(999990000000200)
    assert sub is not None and (sub.virtual, sub.terminated, sub.framed_ip) == (
        True,
        False,
        0x64400004,
    )
    assert _write(table, SetStatus("v", Status.TERMINATED))
    sub = table.find(999990000000200)
    assert sub is not None and sub.terminated and sub.status == Status.TERMINATED


def test_put_group_replaces_in_place_or_appends(live: Live) -> None:
    table = live()
    sub = table.find(440100000000010)
    assert sub is not None and table.groups[sub.group].lock_on_first_connect
    assert _write(table, PutGroup({"groupId": "first", "onImeiLockRejected": ["log"]}))
    assert _write(table, PutGroup({"kind": "group", "groupId": "new", "chap": {"username": "u",
                                   "password": "p"}}))  # fmt: skip
    assert table.groups == (
        table.base.groups[0],
        Group("first", on_imei_lock_rejected=("log",)),
        Group("new", b"u", b"p"),
    )
    assert table.find(440100000000010) == sub, "the SIM keeps its group index"
    assert not table.groups[sub.group].lock_on_first_connect
    assert table.group_index("new") == 2
    assert table.group_document("new") == {
        "groupId": "new",
        "chap": {"username": "u", "password": "p"},
        "lockOnFirstConnect": False,
        "onImeiLockRejected": [],
    }
    assert table.group_document("none") is None
    assert [doc["groupId"] for doc in table.group_documents()] == ["chap", "first", "new"]


def test_decisions_see_the_writes(live: Live) -> None:
    table = live()
    other = AdmissionRequest(b"440100000000001", OTHER_DEVICE)
    assert decide(other, table).accept
    assert _write(table, parse_lock("1", LOCKED_IMEI))
    assert decide(other, table).reason == Reason.IMEI_MISMATCH
    grouped = AdmissionRequest(b"440100000000010", OTHER_DEVICE)
    assert decide(grouped, table).effects & Effect.LOCK
    assert _write(table, PutGroup({"groupId": "first"}))
    assert not decide(grouped, table).effects & Effect.LOCK, "the group's flag is read live"
    ready = AdmissionRequest(b"440100000000004")
    assert decide(ready, table).effects & Effect.ACTIVATE
    assert _write(table, SetStatus("4", Status.ACTIVE))
    assert not decide(ready, table).effects & Effect.ACTIVATE


def test_lock_on_first_connect_race_has_one_winner(live: Live) -> None:
    table = live()
    first = SetLock("10", IDENTITY, LOCKED_IMEI, False, if_unlocked=True)
    second = SetLock("10", OTHER_IDENTITY, OTHER_IMEI, False, if_unlocked=True)
    assert table.check(first) == first and table.check(second) == second
    assert table.apply(2, first) is True
    assert table.apply(3, second) is False, "the second journaled loses"
    sub = table.find(440100000000010)
    assert sub is not None and sub.lock == IDENTITY
    assert table.seq == 3
    with pytest.raises(CommandError, match="already locked") as caught:
        table.check(second)
    assert caught.value.field == "imeiLock"


def test_a_put_sim_that_lost_a_race_changes_nothing(live: Live) -> None:
    table = live()
    one = table.check(PutSim({**NEW_SIM, "simId": "a"}))
    two = table.check(PutSim({**NEW_SIM, "simId": "b"}))
    same_id = table.check(PutSim({"simId": "a", "imsi": "440100000000101"}))
    assert [table.apply(seq, c) for seq, c in enumerate((one, two, same_id), 2)] == [
        True,
        False,
        False,
    ]
    assert table.sim_ids(13) == ["a"] and table.find(440100000000101) is None


def test_apply_refuses_an_old_sequence(live: Live) -> None:
    table = live()
    with pytest.raises(ValueError, match="sequence 1 applied after 1"):
        table.apply(1, UnsetLock("1"))


BAD_WRITES: list[tuple[Command, str, str]] = [
    (UnsetLock("nope"), "simId", "no SIM 'nope'"),
    (SetLock("1", IDENTITY, OTHER_IMEI, False), "imei", "is not the device 35387923425263"),
    (PutSim({**NEW_SIM, "simId": "1"}), "simId", "'1' already exists"),
    (PutSim({**NEW_SIM, "imsi": "440100000000001"}), "imsi", "already belongs to a SIM"),
    (PutSim({**NEW_SIM, "imsi": "999990000000001"}), "imsi", "already belongs to a SIM"),
    (
        PutSim({**NEW_SIM, "virtualSubscribers": [{"imsi": "999990000000003"}]}),
        "virtualSubscribers[0].imsi",
        "already belongs",
    ),
    (
        PutSim({**NEW_SIM, "virtualSubscribers": [{"imsi": "999990000000009"}] * 2}),
        "virtualSubscribers[1].imsi",
        r"is also virtualSubscribers\[0\]\.imsi",
    ),
    (
        PutSim(
            {
                **NEW_SIM,
                "subscription": "planP1",
                "virtualSubscribers": [{"imsi": "999990000000009"}],
            }
        ),
        "virtualSubscribers",
        "cannot hold virtual",
    ),
    (PutSim({**NEW_SIM, "imeiLock": {"imei": "123"}}), "imeiLock.imei", "is not an IMEI"),
    (PutSim({**NEW_SIM, "status": "asleep"}), "status", "'asleep' is not one of"),
    (PutSim({**NEW_SIM, "colour": "red"}), "colour", "unknown field for a sim"),
    (PutSim({**NEW_SIM, "kind": "group"}), "kind", "'group' is not 'sim'"),
    (PutSim({"simId": "new"}), "imsi", "required"),
    (PutSim({**NEW_SIM, "imsi": None}), "imsi", "required"),
    (PutSim({**NEW_SIM, "groupId": "absent"}), "groupId", "no group 'absent'"),
    (PutSim({**NEW_SIM, "framedIp": "100.64.0.1"}), "framedIp", "'100.64.0.1' is already in use"),
    (
        PutSim(
            {
                **NEW_SIM,
                "virtualSubscribers": [{"imsi": "999990000000009", "framedIp": "100.64.0.2"}],
            }
        ),
        "virtualSubscribers[0].framedIp",
        "already in use",
    ),
    (PutSim({"simId": "v", "imsi": "999990000000009", "status": "ready"}), "status", "virtual"),
    (PutSim([]), "document", "not a JSON object"),  # type: ignore[arg-type]
    (PutGroup({"groupId": "g", "onImeiLockRejected": ["webhook"]}), "webhookUrl", "required"),
    (PutGroup({"groupId": "g", "chap": {"username": "u"}}), "chap.password", "required"),
    (PutGroup({"groupId": "g g"}), "groupId", "is not a name"),
    (PutGroup({"chap": None}), "groupId", "required"),
]


@pytest.mark.parametrize(
    ("command", "field", "message"),
    BAD_WRITES,
    ids=[f"{type(command).__name__}-{field}" for command, field, _ in BAD_WRITES],
)
def test_check_names_the_field(live: Live, command: Command, field: str, message: str) -> None:
    table = live()
    with pytest.raises(CommandError, match=message) as caught:
        table.check(command)
    assert caught.value.field == field
    assert (table.seq, table.sim_count) == (1, 13), "a refused write changes nothing"


def test_status_rules(live: Live) -> None:
    table = live()
    with pytest.raises(UnknownSim):
        table.check(SetStatus("nope", Status.ACTIVE))
    assert _write(table, PutSim({"simId": "v", "imsi": "999990000000200"}))
    with pytest.raises(CommandError, match="a virtual SIM is active or terminated") as caught:
        table.check(SetStatus("v", Status.SUSPENDED))
    assert caught.value.field == "status"
    assert _write(table, SetStatus("1", Status.TERMINATED))
    with pytest.raises(CommandError, match="terminated for good"):
        table.check(SetStatus("1", Status.ACTIVE))
    assert table.check(SetStatus("1", Status.TERMINATED)) == SetStatus("1", Status.TERMINATED)


def test_a_refused_sim_keeps_no_framed_ip(live: Live) -> None:
    table = live()
    doubled: dict[str, Any] = {
        **NEW_SIM,
        "virtualSubscribers": [{"imsi": "999990000000009"}, {"imsi": "999990000000010",
                               "framedIp": "100.64.0.1"}],
    }  # fmt: skip
    with pytest.raises(CommandError, match="already in use"):
        table.check(PutSim(doubled))
    checked = table.check(PutSim({**NEW_SIM, "virtualSubscribers": [{"imsi": "999990000000009"}]}))
    assert isinstance(checked, PutSim)
    assert checked.document["virtualSubscribers"][0]["framedIp"] == "100.64.0.4"


def test_api_and_import_make_the_same_document(table_factory: TableFactory) -> None:
    line = {"simId": "a", "imsi": "440100000000001", "subscription": "plan-D", "coverage": "jp",
            "imeiLock": {"imei": "3538792342526301"}, "lockOnFirstConnect": True,
            "framedIp": "10.0.0.1", "virtualSubscribers": [{"imsi": "999990000000001",
            "status": "terminated"}]}  # fmt: skip
    imported = table_factory([line])
    table = LiveTable(Table.empty())
    assert _write(table, PutSim(line))
    assert table.sim_document("a") == imported.sim_document(0)
    assert table.find(440100000000001) == imported.find(440100000000001)
    assert table.find(999990000000001) == imported.find(999990000000001)
    assert table.groups == () and table.find(440100000000001).group == NO_GROUP  # type: ignore[union-attr]
