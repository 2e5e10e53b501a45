"""Write commands: JSON round trips, bad payloads refused, parse_lock as DESIGN §3 says."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.store.commands import (
    Command,
    CommandError,
    PutGroup,
    PutSim,
    SetLock,
    SetStatus,
    UnknownSim,
    UnsetLock,
    from_json,
    parse_lock,
)
from core.store.records import Status

IMEI = "353879234252633"  # Luhn digit 3
IDENTITY = 35387923425263

names = st.text(alphabet="abc019._-", min_size=1, max_size=12)
commands = st.one_of(
    st.builds(SetLock, names, st.integers(0, 10**14 - 1), st.text(), st.booleans(), st.booleans()),
    st.builds(UnsetLock, names),
    st.builds(SetStatus, names, st.sampled_from(Status)),
    st.builds(PutSim, st.dictionaries(st.text(), st.text() | st.integers() | st.booleans())),
    st.builds(
        PutGroup, st.fixed_dictionaries({"groupId": names, "lockOnFirstConnect": st.booleans()})
    ),
)


@given(commands)
def test_json_round_trips(command: Command) -> None:
    payload = command.to_json()
    assert json.loads(payload)["op"] == command.OP
    assert from_json(payload) == command


@given(names | st.text(), st.integers(0, 10**14 - 1), st.text(), st.booleans(), st.booleans())
def test_a_lock_is_journaled_as_the_json_encoder_writes_it(
    sim_id: str, identity: int, imei: str, allow: bool, if_unlocked: bool
) -> None:
    lock = SetLock(sim_id, identity, imei, allow, if_unlocked)
    fields = {
        "op": "setLock",
        "simId": sim_id,
        "identity": identity,
        "imei": imei,
        "allowUnreported": allow,
        "ifUnlocked": if_unlocked,
    }
    encoded = json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode()
    assert lock.to_json() == encoded


def test_json_spells_fields_as_the_api_does() -> None:
    lock = SetLock("s1", IDENTITY, IMEI, True)
    assert json.loads(lock.to_json()) == {
        "op": "setLock",
        "simId": "s1",
        "identity": IDENTITY,
        "imei": IMEI,
        "allowUnreported": True,
        "ifUnlocked": False,
    }
    assert json.loads(SetStatus("s1", Status.STANDBY).to_json())["status"] == "standby"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"[]", "a command is a JSON object"),
        (b'{"op":"drop"}', "unknown op 'drop'"),
        (b'{"simId":"a"}', "unknown op None"),
        (b'{"op":"unsetLock"}', "unsetLock: simId missing"),
        (b'{"op":"unsetLock","simId":7}', "simId: 7 is not a string"),
        (b'{"op":"setStatus","simId":"a","status":"asleep"}', "not a status: 'asleep'"),
        (
            b'{"op":"setLock","simId":"a","identity":true,"imei":"","allowUnreported":true}',
            "identity",
        ),
        (b'{"op":"setLock","simId":"a","identity":1,"imei":"","allowUnreported":1}', "allowUnrep"),
        (b'{"op":"putSim","document":[]}', r"document: \[\] is not an object"),
        (b"{", "Expecting"),
    ],
)
def test_bad_payloads_are_value_errors(payload: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        from_json(payload)


@pytest.mark.parametrize(
    ("imei", "allow", "expected"),
    [
        (IMEI, None, SetLock("s", IDENTITY, IMEI, False)),
        (IMEI, True, SetLock("s", IDENTITY, IMEI, True)),
        (f"{IMEI}|ANONYMOUS", None, SetLock("s", IDENTITY, IMEI, True)),
        (f"{IMEI}|ANONYMOUS", True, SetLock("s", IDENTITY, IMEI, True)),
        ("35387923425263", False, SetLock("s", IDENTITY, "35387923425263", False)),
        ("3538792342526301", None, SetLock("s", IDENTITY, "3538792342526301", False)),
        ("353879234252630", None, SetLock("s", IDENTITY, "353879234252630", False)),
    ],
)
def test_parse_lock(imei: str, allow: bool | None, expected: SetLock) -> None:
    assert parse_lock("s", imei, allow) == expected


@pytest.mark.parametrize(
    ("imei", "allow", "field", "message"),
    [
        ("353879234252634", None, "imei", "is not an IMEI"),
        ("000000000000000", None, "imei", "is not an IMEI"),
        (f"{IMEI}|anonymous", None, "imei", "only '|ANONYMOUS' may follow"),
        (f"{IMEI}|ANONYMOUS", False, "imei", "contradicts allowUnreported false"),
        (None, None, "imei", "required"),
        (353879234252633, None, "imei", "is not a string"),
        (IMEI, "yes", "allowUnreported", "is not true or false"),
    ],
)
def test_parse_lock_names_the_field(imei: object, allow: object, field: str, message: str) -> None:
    with pytest.raises(CommandError, match=message) as caught:
        parse_lock("s", imei, allow)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")


def test_unknown_sim_is_a_command_error_on_sim_id() -> None:
    error = UnknownSim("s9")
    assert isinstance(error, CommandError)
    assert (error.field, error.message, error.sim_id) == ("simId", "no SIM 's9'", "s9")
