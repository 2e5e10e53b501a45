"""The admission policy against DESIGN §2, written as its tables."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from core.policy.admission import LOCK_TABLE, LockState, Reported, decide
from core.policy.verdict import AdmissionRequest, Effect, Reason
from core.radius.auth import chap_response
from core.store.table import Table
from tests.subscribers import (
    ALLOW_UNREPORTED,
    GARBAGE,
    NO_LOCK,
    OTHER_DEVICE,
    SAME_IMEISV,
    SAME_SPARE_0,
    SAME_TBCD,
    SIMS,
    STRICT,
    ZEROS_15,
    ZEROS_16,
)


@pytest.fixture
def table(table_factory: Callable[[list[dict[str, Any]]], Table]) -> Table:
    return table_factory(SIMS)


# DESIGN §2 step 6, row by row: lock state x what the request reports -> verdict.
LOCK_ROWS = [
    (NO_LOCK, SAME_IMEISV, Reason.OK),
    (NO_LOCK, OTHER_DEVICE, Reason.OK),
    (NO_LOCK, None, Reason.OK),
    (NO_LOCK, ZEROS_15, Reason.OK),
    (NO_LOCK, GARBAGE, Reason.OK),
    (ALLOW_UNREPORTED, SAME_IMEISV, Reason.OK),
    (ALLOW_UNREPORTED, SAME_SPARE_0, Reason.OK),
    (ALLOW_UNREPORTED, SAME_TBCD, Reason.OK),
    (ALLOW_UNREPORTED, OTHER_DEVICE, Reason.IMEI_MISMATCH),
    (ALLOW_UNREPORTED, None, Reason.OK),
    (ALLOW_UNREPORTED, ZEROS_15, Reason.OK),
    (ALLOW_UNREPORTED, ZEROS_16, Reason.OK),
    (ALLOW_UNREPORTED, GARBAGE, Reason.IMEI_INVALID),
    (STRICT, SAME_IMEISV, Reason.OK),
    (STRICT, SAME_SPARE_0, Reason.OK),
    (STRICT, OTHER_DEVICE, Reason.IMEI_MISMATCH),
    (STRICT, None, Reason.IMEI_NOT_REPORTED),
    (STRICT, ZEROS_15, Reason.IMEI_NOT_REPORTED),
    (STRICT, ZEROS_16, Reason.IMEI_NOT_REPORTED),
    (STRICT, GARBAGE, Reason.IMEI_INVALID),
]


@pytest.mark.parametrize(("imsi", "imeisv", "reason"), LOCK_ROWS)
def test_imei_lock_truth_table(
    table: Table, imsi: bytes, imeisv: bytes | None, reason: Reason
) -> None:
    verdict = decide(AdmissionRequest(imsi, imeisv), table)
    assert (verdict.accept, verdict.reason) == (reason is Reason.OK, reason)


def test_lock_table_covers_every_cell() -> None:
    assert set(LOCK_TABLE) == {(state, seen) for state in LockState for seen in Reported}


STEP_ROWS = [
    # step 2: IMSI
    (None, Reason.IMSI_INVALID),
    (b"44010000000001", Reason.IMSI_INVALID),  # 14 digits
    (b"4401000000000011", Reason.IMSI_INVALID),  # 16 digits
    (b"44010000000000a", Reason.IMSI_INVALID),
    # step 3: subscriber
    (b"440109999999999", Reason.UNKNOWN_SUBSCRIBER),
    (b"999999999999999", Reason.UNKNOWN_SUBSCRIBER),
    # step 4: status
    (b"440100000000004", Reason.OK),  # ready
    (b"440100000000005", Reason.OK),  # standby
    (b"440100000000006", Reason.SIM_NOT_ACTIVE),  # inactive
    (b"440100000000007", Reason.SIM_NOT_ACTIVE),  # suspended
    (b"440100000000008", Reason.SIM_NOT_ACTIVE),  # terminated
    (b"999990000000002", Reason.SUBSCRIBER_TERMINATED),  # a terminated virtual subscriber
    # step 5: CHAP group without credentials in the request
    (b"440100000000009", Reason.CHAP_FAILED),
]


@pytest.mark.parametrize(("imsi", "reason"), STEP_ROWS)
def test_decision_steps(table: Table, imsi: bytes | None, reason: Reason) -> None:
    verdict = decide(AdmissionRequest(imsi), table)
    assert verdict.reason is reason
    assert verdict.accept is (reason is Reason.OK)


@pytest.mark.parametrize("imsi", [b"440100000000004", b"440100000000005"])
def test_ready_and_standby_ask_to_become_active(table: Table, imsi: bytes) -> None:
    verdict = decide(AdmissionRequest(imsi), table)
    assert verdict.effects == Effect.ACTIVATE


def test_active_sim_asks_for_nothing(table: Table) -> None:
    assert decide(AdmissionRequest(NO_LOCK, SAME_IMEISV), table).effects == Effect.NONE


CHALLENGE = bytes(range(16))


@pytest.mark.parametrize(
    ("user_name", "password", "accept"),
    [
        (b"dev", b"s3cret", True),
        (b"dev", b"wrong", False),
        (b"other", b"s3cret", False),
        (None, b"s3cret", False),
    ],
)
def test_chap_per_group(
    table: Table, user_name: bytes | None, password: bytes, accept: bool
) -> None:
    ident = 200  # above 127: the CHAP ident is a raw octet (REFERENCE §1.10)
    chap = bytes((ident,)) + chap_response(ident, password, CHALLENGE)
    verdict = decide(AdmissionRequest(b"440100000000009", None, user_name, chap, CHALLENGE), table)
    assert verdict.accept is accept
    assert verdict.reason is (Reason.OK if accept else Reason.CHAP_FAILED)


def test_chap_is_not_asked_of_sims_outside_a_chap_group(table: Table) -> None:
    assert decide(AdmissionRequest(NO_LOCK, None, b"anyone"), table).accept


@pytest.mark.parametrize(
    ("imsi", "imeisv", "effects"),
    [
        (b"440100000000010", SAME_IMEISV, Effect.LOCK),  # group action, device reported
        (b"440100000000010", None, Effect.NONE),  # not reported: locks nothing
        (b"440100000000010", ZEROS_15, Effect.NONE),
        (b"440100000000010", GARBAGE, Effect.NONE),
        (b"440100000000011", SAME_IMEISV, Effect.NONE),  # already locked
        (NO_LOCK, SAME_IMEISV, Effect.NONE),  # no action
    ],
)
def test_lock_on_first_connect(
    table: Table, imsi: bytes, imeisv: bytes | None, effects: Effect
) -> None:
    verdict = decide(AdmissionRequest(imsi, imeisv), table)
    assert verdict.accept
    assert verdict.effects == effects


def test_virtual_subscriber_resolves_to_its_sim_and_primary_imsi(table: Table) -> None:
    verdict = decide(AdmissionRequest(b"999990000000001"), table)
    assert verdict.accept
    assert verdict.subscriber is not None
    assert verdict.subscriber.primary_imsi == 440100000000012
    assert verdict.subscriber.framed_ip != 0  # virtual subscribers carry a framed IP


def test_virtual_subscriber_on_a_strict_lock_is_rejected_as_not_reported(table: Table) -> None:
    # A virtual subscriber never reports an IMEI (DESIGN §4), even if the packet carries one.
    verdict = decide(AdmissionRequest(b"999990000000003", SAME_IMEISV), table)
    assert verdict.reason is Reason.IMEI_NOT_REPORTED


def test_reject_carries_the_reported_identity(table: Table) -> None:
    verdict = decide(AdmissionRequest(STRICT, OTHER_DEVICE), table)
    assert verdict.reported == 49015420323751
    assert verdict.subscriber is not None
    assert verdict.subscriber.lock == 35387923425263
