"""The admin HTTP API as an operator uses it: real HTTP and real RADIUS over 127.0.0.1.

Each write is checked where its user sees it: in the API's answer, in the next GET, and in the
verdict the next Access-Request gets over UDP.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import importlib.util
import os
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from core.app import Server, StartupError
from core.policy.imei import format_identity
from core.probe import Request, build_access_request
from core.radius.codes import Code
from core.radius.wire import iter_attributes
from core.store.format import MAGIC
from tests.admin.conftest import Servers, client
from tests.service.test_udp import HANDLES, KEY, access_request, exchange
from tests.subscribers import LOCKED_IMEI, OTHER_DEVICE, SAME_IMEISV, SIMS, ZEROS_15

pytestmark = pytest.mark.asyncio
#: for the tests that change nothing: they share one server (``shared_server``)
SHARED = pytest.mark.asyncio(loop_scope="module")

OTHER_IMEI = OTHER_DEVICE.decode()  # 490154203237518: a valid IMEI of another device
NEW_SIM = {"simId": "new-1", "imsi": "440100000000101"}


async def admit(server: Server, imsi: str, imeisv: bytes | None = None) -> tuple[str, str | None]:
    """Send one Access-Request over UDP; return ("accept" | "reject", Reply-Message)."""
    reply = await exchange(server.auth_port, access_request(imsi.encode(), imeisv))
    return _verdict(reply)


async def admit_chap(
    server: Server, imsi: str, user_name: str, password: str
) -> tuple[str, str | None]:
    request = Request(imsi=imsi, user_name=user_name, chap_password=password)
    datagram = build_access_request(request, 1, bytes(range(16)), KEY, HANDLES)
    return _verdict(await exchange(server.auth_port, datagram))


def _verdict(reply: bytes | None) -> tuple[str, str | None]:
    assert reply is not None, "no reply"
    verdict = {Code.ACCESS_ACCEPT: "accept", Code.ACCESS_REJECT: "reject"}[Code(reply[0])]
    message = dict(iter_attributes(reply)).get(18)  # Reply-Message
    return verdict, None if message is None else message.decode()


def refusal(response: httpx.Response) -> dict[str, Any]:
    """The ``error`` object of a 4xx answer."""
    error: dict[str, Any] = response.json()["error"]
    return error


async def scrape(api: httpx.AsyncClient) -> dict[str, float]:
    """/metrics as {sample with its labels: value}."""
    response = await api.get("/metrics")
    assert response.status_code == 200
    return {
        name: float(value)
        for name, _, value in (
            line.rpartition(" ") for line in response.text.splitlines() if line[:1] != "#"
        )
    }


async def sim(api: httpx.AsyncClient, sim_id: str) -> dict[str, Any]:
    response = await api.get(f"/v1/sims/{sim_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# -- authentication -------------------------------------------------------------------------------


@SHARED
async def test_v1_without_a_token_is_401_naming_authorization(shared_server: Server) -> None:
    async with client(shared_server, token=None) as anonymous:
        for response in (
            await anonymous.get("/v1/sims"),
            await anonymous.get("/v1/sims/1"),
            await anonymous.post("/v1/sims/3/unset_imei_lock"),
        ):
            assert response.status_code == 401
            assert refusal(response)["field"] == "authorization"
    async with client(shared_server) as api:
        assert (await sim(api, "3"))["imeiLock"] is not None  # the refused write did nothing


@SHARED
async def test_wrong_token_is_401(shared_server: Server) -> None:
    async with client(shared_server, token="not-the-token") as wrong:
        response = await wrong.get("/v1/sims/1")
    assert response.status_code == 401
    assert refusal(response)["field"] == "authorization"
    assert "not-the-token" not in response.text


async def test_without_a_configured_token_the_api_is_off(servers: Servers) -> None:
    server = await servers.start(token="")
    async with client(server, token=None) as anonymous:
        response = await anonymous.get("/v1/sims/1")
        assert response.status_code == 403
        assert refusal(response)["field"] == "token"
        assert "http.token" in refusal(response)["message"]
        assert (await anonymous.get("/healthz")).status_code == 200
    async with client(server, token="guess") as guessing:
        assert (await guessing.get("/v1/sims/1")).status_code == 403


@SHARED
async def test_health_metrics_and_openapi_need_no_token(shared_server: Server) -> None:
    async with client(shared_server, token=None) as anonymous:
        health = await anonymous.get("/healthz")
        metrics = await anonymous.get("/metrics")
        schema = await anonymous.get("/openapi.json")
    assert health.status_code == 200
    assert health.json()["status"] == "ok" and health.json()["sims"] == 13
    assert metrics.status_code == 200 and "simgate_table_sims 13.0" in metrics.text
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for path in (
        "/v1/sims",
        "/v1/sims/{sim_id}",
        "/v1/sims/{sim_id}/activate",
        "/v1/sims/{sim_id}/deactivate",
        "/v1/sims/{sim_id}/set_to_standby",
        "/v1/sims/{sim_id}/suspend",
        "/v1/sims/{sim_id}/terminate",
        "/v1/sims/{sim_id}/set_imei_lock",
        "/v1/sims/{sim_id}/unset_imei_lock",
        "/v1/sims/set_imei_lock",
        "/v1/sims/{sim_id}/events",
        "/v1/groups/{group_id}",
        "/v1/snapshot",
        "/v1/snapshot/compact",
    ):
        assert path in paths, path


# -- SIMs -----------------------------------------------------------------------------------------


async def test_created_sim_is_shown_listed_and_admitted(
    server: Server, api: httpx.AsyncClient
) -> None:
    assert await admit(server, NEW_SIM["imsi"]) == ("reject", "unknown-subscriber")
    created = await api.post("/v1/sims", json=NEW_SIM)
    assert created.status_code == 201
    view = created.json()
    assert view["simId"] == "new-1"
    assert view["imsi"] == "440100000000101"
    assert view["status"] == "active"
    assert view["imeiLock"] is None
    assert view["sessionStatus"] is None
    assert await sim(api, "new-1") == view
    listed = (await api.get("/v1/sims", params={"offset": 13})).json()
    assert listed["total"] == 14
    assert [item["simId"] for item in listed["sims"]] == ["new-1"]
    assert await admit(server, NEW_SIM["imsi"], SAME_IMEISV) == ("accept", None)


async def test_created_sim_with_a_lock_is_judged_by_it(
    server: Server, api: httpx.AsyncClient
) -> None:
    document = {**NEW_SIM, "imeiLock": f"{LOCKED_IMEI}|ANONYMOUS", "status": "active"}
    created = await api.post("/v1/sims", json=document)
    assert created.status_code == 201
    assert created.json()["imeiLock"] == {"imei": LOCKED_IMEI, "allowUnreported": True}
    assert await admit(server, NEW_SIM["imsi"], OTHER_DEVICE) == ("reject", "imei-mismatch")
    assert await admit(server, NEW_SIM["imsi"], None) == ("accept", None)


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"simId": "new-1", "imsi": "44010000000010X"}, "imsi"),
        ({"simId": "new-1", "imsi": "4401000000001"}, "imsi"),
        ({"simId": "new-1"}, "imsi"),
        ({"imsi": "440100000000101"}, "simId"),
        ({"simId": "new/1", "imsi": "440100000000101"}, "simId"),
        ({**NEW_SIM, "imeiLock": {"imei": "353879234252634"}}, "imeiLock.imei"),
        ({**NEW_SIM, "imeiLock": {"imei": LOCKED_IMEI, "allowUnreported": 1}}, "imeiLock"),
        ({**NEW_SIM, "status": "sleeping"}, "status"),
        ({**NEW_SIM, "groupId": "no-such-group"}, "groupId"),
        ({**NEW_SIM, "colour": "red"}, "colour"),
        ({**NEW_SIM, "framedIp": "10.0.0"}, "framedIp"),
        ({"simId": "1", "imsi": "440100000000101"}, "simId"),  # simId taken
        ({"simId": "new-1", "imsi": "440100000000003"}, "imsi"),  # IMSI taken
        (
            {**NEW_SIM, "virtualSubscribers": [{"imsi": "999990000000001"}]},  # SIM 12's
            "virtualSubscribers[0].imsi",
        ),
    ],
    ids=[
        "imsi-not-digits",
        "imsi-short",
        "imsi-missing",
        "simId-missing",
        "simId-not-a-name",
        "imei-bad-luhn",
        "allowUnreported-not-bool",
        "status-unknown",
        "group-unknown",
        "unknown-field",
        "framedIp-bad",
        "duplicate-simId",
        "duplicate-imsi",
        "duplicate-virtual-imsi",
    ],
)
@SHARED
async def test_bad_sim_is_refused_naming_the_field(
    shared_api: httpx.AsyncClient, document: dict[str, Any], field: str
) -> None:
    response = await shared_api.post("/v1/sims", json=document)
    assert response.status_code == 400
    error = refusal(response)
    assert error["field"].startswith(field), error
    assert error["message"].startswith(field.split(".")[0]), error
    assert (await shared_api.get("/v1/sims")).json()["total"] == 13  # nothing was created


@pytest.mark.parametrize(
    ("content", "field"),
    [(b"[1, 2]", "body"), (b"{not json", "body"), (b"", "body")],
    ids=["not-an-object", "not-json", "empty"],
)
@SHARED
async def test_sim_body_that_is_not_an_object_is_400(
    shared_api: httpx.AsyncClient, content: bytes, field: str
) -> None:
    response = await shared_api.post(
        "/v1/sims", content=content, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert refusal(response)["field"] == field


@SHARED
async def test_unknown_sim_is_404(shared_api: httpx.AsyncClient) -> None:
    response = await shared_api.get("/v1/sims/no-such-sim")
    assert response.status_code == 404
    assert refusal(response)["field"] == "simId"
    assert "no-such-sim" in refusal(response)["message"]


@SHARED
async def test_list_pages_with_limit_and_offset(shared_api: httpx.AsyncClient) -> None:
    api = shared_api
    page = (await api.get("/v1/sims", params={"limit": 2, "offset": 1})).json()
    assert [item["simId"] for item in page["sims"]] == ["2", "3"]
    assert (page["offset"], page["limit"], page["total"]) == (1, 2, 13)
    assert page["sims"][1]["imeiLock"] == {"imei": LOCKED_IMEI, "allowUnreported": False}
    everything = (await api.get("/v1/sims")).json()
    assert [item["simId"] for item in everything["sims"]] == [str(n) for n in range(1, 14)]
    beyond = (await api.get("/v1/sims", params={"offset": 50})).json()
    assert beyond["sims"] == [] and beyond["total"] == 13


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "ten"}, "limit"),
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"offset": -1}, "offset"),
        ({"offset": "x"}, "offset"),
    ],
)
@SHARED
async def test_bad_page_is_400_naming_the_parameter(
    shared_api: httpx.AsyncClient, params: dict[str, Any], field: str
) -> None:
    response = await shared_api.get("/v1/sims", params=params)
    assert response.status_code == 400
    assert refusal(response)["field"] == field


# -- status ---------------------------------------------------------------------------------------


async def test_status_changes_show_in_the_view(api: httpx.AsyncClient) -> None:
    for action, status in (
        ("deactivate", "inactive"),
        ("set_to_standby", "standby"),
        ("suspend", "suspended"),
        ("activate", "active"),
        ("terminate", "terminated"),
    ):
        response = await api.post(f"/v1/sims/1/{action}")
        assert response.status_code == 200, response.text
        assert response.json()["status"] == status
        assert (await sim(api, "1"))["status"] == status


async def test_deactivated_sim_is_rejected_until_activated(
    server: Server, api: httpx.AsyncClient
) -> None:
    assert await admit(server, "440100000000001") == ("accept", None)
    assert (await api.post("/v1/sims/1/deactivate")).status_code == 200
    assert await admit(server, "440100000000001") == ("reject", "sim-not-active")
    assert (await api.post("/v1/sims/1/activate")).status_code == 200
    assert await admit(server, "440100000000001") == ("accept", None)


async def test_terminated_sim_cannot_be_activated_again(
    server: Server, api: httpx.AsyncClient
) -> None:
    assert (await api.post("/v1/sims/1/terminate")).status_code == 200
    for action in ("activate", "deactivate", "set_to_standby", "suspend"):
        response = await api.post(f"/v1/sims/1/{action}")
        assert response.status_code == 400
        assert refusal(response)["field"] == "status"
        assert "terminated" in refusal(response)["message"]
    assert (await sim(api, "1"))["status"] == "terminated"
    verdict, _ = await admit(server, "440100000000001")
    assert verdict == "reject"


@pytest.mark.parametrize(
    "action", ["activate", "deactivate", "set_to_standby", "suspend", "terminate"]
)
@SHARED
async def test_status_change_of_unknown_sim_is_404(
    shared_api: httpx.AsyncClient, action: str
) -> None:
    response = await shared_api.post(f"/v1/sims/no-such-sim/{action}")
    assert response.status_code == 404
    assert refusal(response)["field"] == "simId"


# -- set_imei_lock / unset_imei_lock --------------------------------------------------------------


@pytest.mark.parametrize(
    "imei",
    ["353879234252633", "353879234252630", "35387923425263", "3538792342526301"],
    ids=["15-luhn", "15-spare-0", "14", "16-imeisv"],
)
async def test_lock_judges_the_next_request(
    server: Server, api: httpx.AsyncClient, imei: str
) -> None:
    assert await admit(server, "440100000000001", OTHER_DEVICE) == ("accept", None)
    response = await api.post("/v1/sims/1/set_imei_lock", json={"imei": imei})
    assert response.status_code == 200, response.text
    assert response.json()["imeiLock"] == {"imei": imei, "allowUnreported": False}
    assert "warnings" not in response.json()
    assert (await sim(api, "1"))["imeiLock"] == {"imei": imei, "allowUnreported": False}
    assert await admit(server, "440100000000001", OTHER_DEVICE) == ("reject", "imei-mismatch")
    assert await admit(server, "440100000000001", SAME_IMEISV) == ("accept", None)
    assert await admit(server, "440100000000001", None) == ("reject", "imei-not-reported")


@pytest.mark.parametrize(
    "imei",
    [
        "353879234252634",  # 15 digits, last neither the Luhn digit (3) nor 0
        "3538792342526",  # 13
        "35387923425263011",  # 17
        "35387923425263X",
        "000000000000000",  # a lock to "not reported" would block the SIM forever
        f"{LOCKED_IMEI}|ANONYMOUSLY",
        f"{LOCKED_IMEI} ",
        353879234252633,
    ],
    ids=["bad-luhn", "13", "17", "letter", "zeros", "bad-suffix", "space", "number"],
)
@SHARED
async def test_bad_imei_is_400_naming_imei(
    shared_server: Server, shared_api: httpx.AsyncClient, imei: object
) -> None:
    response = await shared_api.post("/v1/sims/1/set_imei_lock", json={"imei": imei})
    assert response.status_code == 400
    assert refusal(response)["field"] == "imei"
    assert (await sim(shared_api, "1"))["imeiLock"] is None
    assert await admit(shared_server, "440100000000001", OTHER_DEVICE) == ("accept", None)


@SHARED
async def test_bad_set_imei_lock_bodies_name_the_field(shared_api: httpx.AsyncClient) -> None:
    api = shared_api
    wrong_flag = await api.post(
        "/v1/sims/1/set_imei_lock", json={"imei": LOCKED_IMEI, "allowUnreported": "yes"}
    )
    assert wrong_flag.status_code == 400
    assert refusal(wrong_flag)["field"] == "allowUnreported"
    unknown = await api.post("/v1/sims/1/set_imei_lock", json={"imei": LOCKED_IMEI, "pin": 1})
    assert unknown.status_code == 400
    assert refusal(unknown)["field"] == "pin"
    contradiction = await api.post(
        "/v1/sims/1/set_imei_lock",
        json={"imei": f"{LOCKED_IMEI}|ANONYMOUS", "allowUnreported": False},
    )
    assert contradiction.status_code == 400
    assert refusal(contradiction)["field"] == "imei"
    assert (await sim(api, "1"))["imeiLock"] is None


async def test_anonymous_suffix_equals_allow_unreported(
    server: Server, api: httpx.AsyncClient
) -> None:
    second = {"simId": "new-2", "imsi": "440100000000102"}
    assert (await api.post("/v1/sims", json=second)).status_code == 201
    anonymous = await api.post(
        "/v1/sims/1/set_imei_lock", json={"imei": f"{LOCKED_IMEI}|ANONYMOUS"}
    )
    flagged = await api.post(
        "/v1/sims/new-2/set_imei_lock", json={"imei": LOCKED_IMEI, "allowUnreported": True}
    )
    assert anonymous.status_code == flagged.status_code == 200
    assert anonymous.json()["imeiLock"] == {"imei": LOCKED_IMEI, "allowUnreported": True}
    assert flagged.json()["imeiLock"] == anonymous.json()["imeiLock"]
    for reported in (None, ZEROS_15, SAME_IMEISV, OTHER_DEVICE):
        first = await admit(server, "440100000000001", reported)
        assert first == await admit(server, "440100000000102", reported), reported
        assert first[0] == ("reject" if reported == OTHER_DEVICE else "accept")


async def test_lock_without_imei_takes_the_online_sessions(
    server: Server, api: httpx.AsyncClient
) -> None:
    assert await admit(server, "440100000000001", SAME_IMEISV) == ("accept", None)
    session = (await sim(api, "1"))["sessionStatus"]
    assert session["online"] is True
    assert session["imei"] == LOCKED_IMEI and session["imeiReported"] is True
    response = await api.post("/v1/sims/1/set_imei_lock", json={})
    assert response.status_code == 200, response.text
    assert response.json()["imeiLock"] == {"imei": LOCKED_IMEI, "allowUnreported": False}
    assert await admit(server, "440100000000001", OTHER_DEVICE) == ("reject", "imei-mismatch")
    assert await admit(server, "440100000000001", SAME_IMEISV) == ("accept", None)


async def test_lock_without_imei_or_body_takes_the_sessions_with_allow_unreported(
    server: Server, api: httpx.AsyncClient
) -> None:
    assert await admit(server, "440100000000001", OTHER_DEVICE) == ("accept", None)
    response = await api.post("/v1/sims/1/set_imei_lock", json={"allowUnreported": True})
    assert response.json()["imeiLock"] == {"imei": OTHER_IMEI, "allowUnreported": True}
    no_body = await api.post("/v1/sims/1/set_imei_lock")
    assert no_body.status_code == 200, no_body.text
    assert no_body.json()["imeiLock"] == {"imei": OTHER_IMEI, "allowUnreported": False}


async def test_lock_without_imei_and_without_session_is_400(
    server: Server, api: httpx.AsyncClient
) -> None:
    response = await api.post("/v1/sims/1/set_imei_lock", json={})
    assert response.status_code == 400
    error = refusal(response)
    assert error["field"] == "imei"
    assert "no online session" in error["message"]
    assert (await sim(api, "1"))["imeiLock"] is None


@pytest.mark.parametrize("reported", [ZEROS_15, None], ids=["zeros", "absent"])
async def test_lock_to_a_session_that_reported_no_imei_is_refused(
    server: Server, api: httpx.AsyncClient, reported: bytes | None
) -> None:
    assert await admit(server, "440100000000001", reported) == ("accept", None)
    session = (await sim(api, "1"))["sessionStatus"]
    assert session["online"] is True
    assert session["imeiReported"] is False and session["imei"] is None
    response = await api.post("/v1/sims/1/set_imei_lock", json={})
    assert response.status_code == 400
    error = refusal(response)
    assert error["field"] == "imei"
    assert "did not report an IMEI" in error["message"]
    assert "forever" in error["message"]
    assert (await sim(api, "1"))["imeiLock"] is None
    assert await admit(server, "440100000000001", reported) == ("accept", None)


async def test_lock_after_a_session_without_imei_warns_unless_unreported_allowed(
    server: Server, api: httpx.AsyncClient
) -> None:
    assert await admit(server, "440100000000001", ZEROS_15) == ("accept", None)
    strict = await api.post("/v1/sims/1/set_imei_lock", json={"imei": LOCKED_IMEI})
    assert strict.status_code == 200
    [warning] = strict.json()["warnings"]
    assert "did not report an IMEI" in warning
    assert "imei-not-reported" in warning
    assert "warnings" not in await sim(api, "1")  # a warning belongs to the answer, not the SIM
    for allowing in (
        {"imei": f"{LOCKED_IMEI}|ANONYMOUS"},
        {"imei": LOCKED_IMEI, "allowUnreported": True},
    ):
        response = await api.post("/v1/sims/1/set_imei_lock", json=allowing)
        assert response.status_code == 200
        assert "warnings" not in response.json()


async def test_lock_after_a_session_with_imei_does_not_warn(
    server: Server, api: httpx.AsyncClient
) -> None:
    assert await admit(server, "440100000000001", OTHER_DEVICE) == ("accept", None)
    response = await api.post("/v1/sims/1/set_imei_lock", json={"imei": LOCKED_IMEI})
    assert response.status_code == 200
    assert "warnings" not in response.json()


async def test_setting_or_removing_a_lock_leaves_the_online_session(
    server: Server, api: httpx.AsyncClient
) -> None:
    assert await admit(server, "440100000000001", SAME_IMEISV) == ("accept", None)
    session = (await sim(api, "1"))["sessionStatus"]
    locked = await api.post("/v1/sims/1/set_imei_lock", json={"imei": OTHER_IMEI})
    assert locked.json()["sessionStatus"] == session
    assert (await sim(api, "1"))["sessionStatus"] == session
    unlocked = await api.post("/v1/sims/1/unset_imei_lock")
    assert unlocked.json()["sessionStatus"] == session
    relocked = await api.post("/v1/sims/1/set_imei_lock", json={"imei": OTHER_IMEI})
    assert relocked.json()["sessionStatus"] == session
    # the lock is judged at the next session establishment
    assert await admit(server, "440100000000001", SAME_IMEISV) == ("reject", "imei-mismatch")
    assert (await sim(api, "1"))["sessionStatus"] == session  # a reject opens no session


async def test_unset_lets_any_device_in(server: Server, api: httpx.AsyncClient) -> None:
    assert await admit(server, "440100000000003", OTHER_DEVICE) == ("reject", "imei-mismatch")
    assert await admit(server, "440100000000003", None) == ("reject", "imei-not-reported")
    response = await api.post("/v1/sims/3/unset_imei_lock")
    assert response.status_code == 200
    assert response.json()["imeiLock"] is None
    assert (await sim(api, "3"))["imeiLock"] is None
    for reported in (OTHER_DEVICE, None, SAME_IMEISV):
        assert await admit(server, "440100000000003", reported) == ("accept", None)
    again = await api.post("/v1/sims/3/unset_imei_lock")  # unsetting twice is harmless
    assert again.status_code == 200 and again.json()["imeiLock"] is None


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/sims/no-such-sim/set_imei_lock", {"imei": LOCKED_IMEI}),
        ("/v1/sims/no-such-sim/set_imei_lock", {}),
        ("/v1/sims/no-such-sim/unset_imei_lock", None),
    ],
    ids=["set", "set-from-session", "unset"],
)
@SHARED
async def test_lock_of_unknown_sim_is_404(
    shared_api: httpx.AsyncClient, path: str, body: dict[str, Any] | None
) -> None:
    response = await shared_api.post(path, json=body)
    assert response.status_code == 404
    assert refusal(response)["field"] == "simId"


# -- the batch lock -------------------------------------------------------------------------------


async def test_batch_locks_each_sim_to_its_own_session(
    server: Server, api: httpx.AsyncClient
) -> None:
    assert await admit(server, "440100000000001", SAME_IMEISV) == ("accept", None)
    assert (await api.post("/v1/sims", json=NEW_SIM)).status_code == 201
    assert await admit(server, NEW_SIM["imsi"], OTHER_DEVICE) == ("accept", None)
    response = await api.post(
        "/v1/sims/set_imei_lock", json={"simIds": ["1", "new-1", "4", "no-such-sim"]}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["failed"] == 2
    first, new, offline, unknown = body["results"]
    assert first == {
        "simId": "1",
        "ok": True,
        "imeiLock": {"imei": LOCKED_IMEI, "allowUnreported": False},
    }
    assert new["ok"] is True and new["imeiLock"]["imei"] == OTHER_IMEI
    assert offline["simId"] == "4" and offline["ok"] is False
    assert "no online session" in offline["error"]
    assert unknown["simId"] == "no-such-sim" and unknown["ok"] is False
    assert (await sim(api, "4"))["imeiLock"] is None
    assert await admit(server, "440100000000001", OTHER_DEVICE) == ("reject", "imei-mismatch")
    assert await admit(server, NEW_SIM["imsi"], SAME_IMEISV) == ("reject", "imei-mismatch")
    assert await admit(server, NEW_SIM["imsi"], OTHER_DEVICE) == ("accept", None)


async def test_a_batch_larger_than_a_chunk_locks_every_sim_in_order_sharing_syncs(
    server: Server, api: httpx.AsyncClient
) -> None:
    count = 70  # over two chunks of LOCK_MANY_CHUNK
    sim_ids = [f"b-{n}" for n in range(count)]
    for n, sim_id in enumerate(sim_ids):
        imsi = f"4401000000005{n:02d}"
        assert (await api.post("/v1/sims", json={"simId": sim_id, "imsi": imsi})).is_success
        device = f"{35387923000000 + n:014d}0".encode()  # an IMEI with spare digit 0
        assert await admit(server, imsi, device) == ("accept", None)
    before = await scrape(api)
    asked = [*sim_ids[:40], "b-3", "no-such-sim", *sim_ids[40:]]  # b-3 twice
    response = await api.post("/v1/sims/set_imei_lock", json={"simIds": asked})
    assert response.status_code == 200, response.text
    body = response.json()
    assert [result["simId"] for result in body["results"]] == asked
    assert body["failed"] == 1 and body["results"][41]["ok"] is False
    for n in (0, 3, 39, 69):
        shown = format_identity(35387923000000 + n)  # the 15 digits with the Luhn digit
        assert (await sim(api, f"b-{n}"))["imeiLock"]["imei"] == shown
    assert body["results"][40]["imeiLock"] == body["results"][3]["imeiLock"]
    assert await admit(server, "440100000000569", OTHER_DEVICE) == ("reject", "imei-mismatch")
    after = await scrape(api)
    records = after["simgate_journal_records_total"] - before["simgate_journal_records_total"]
    syncs = after["simgate_journal_syncs_total"] - before["simgate_journal_syncs_total"]
    assert records == count + 1
    assert syncs <= records / 8  # not one sync per SIM


async def test_batch_reports_sessions_without_imei_and_warnings(
    server: Server, api: httpx.AsyncClient
) -> None:
    assert await admit(server, "440100000000001", ZEROS_15) == ("accept", None)
    assert await admit(server, "440100000000003", SAME_IMEISV) == ("accept", None)
    body = (
        await api.post(
            "/v1/sims/set_imei_lock", json={"simIds": ["1", "3"], "allowUnreported": True}
        )
    ).json()
    assert body["failed"] == 1
    refused, locked = body["results"]
    assert refused["ok"] is False and "did not report an IMEI" in refused["error"]
    assert locked["imeiLock"] == {"imei": LOCKED_IMEI, "allowUnreported": True}
    assert await admit(server, "440100000000003", None) == ("accept", None)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "simIds"),
        ({"simIds": "1"}, "simIds"),
        ({"simIds": []}, "simIds"),
        ({"simIds": [1]}, "simIds"),
        ({"simIds": ["x"] * 1001}, "simIds"),
        ({"simIds": ["1"], "allowUnreported": "yes"}, "allowUnreported"),
        ({"simIds": ["1"], "imei": LOCKED_IMEI}, "imei"),  # would be ignored: refused instead
    ],
    ids=["missing", "string", "empty", "not-strings", "too-many", "flag-not-bool", "imei"],
)
@SHARED
async def test_bad_batch_is_400_naming_the_field(
    shared_api: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    response = await shared_api.post("/v1/sims/set_imei_lock", json=body)
    assert response.status_code == 400
    assert refusal(response)["field"] == field
    assert (await sim(shared_api, "1"))["imeiLock"] is None


async def test_metrics_show_sessions_and_writes_sharing_syncs(
    server: Server, api: httpx.AsyncClient
) -> None:
    before = await scrape(api)
    assert before["simgate_sessions"] == 0 and before["simgate_sessions_online"] == 0
    assert before["simgate_journal_records_total"] == 0
    snapshot = before["simgate_snapshot_sequence"]
    assert before["simgate_journal_sequence"] == snapshot
    assert await admit(server, "440100000000001", SAME_IMEISV) == ("accept", None)
    assert await admit(server, "440100000000003", SAME_IMEISV) == ("accept", None)

    def create(n: int) -> Any:
        return api.post("/v1/sims", json={"simId": f"m-{n}", "imsi": f"4401000000004{n:02d}"})

    answers = await asyncio.gather(*(create(n) for n in range(20)))
    assert [answer.status_code for answer in answers] == [201] * 20
    after = await scrape(api)
    assert after["simgate_sessions"] == 2 and after["simgate_sessions_online"] == 2
    assert after["simgate_journal_records_total"] == 20
    assert after["simgate_journal_sequence"] == snapshot + 20
    assert 1 <= after["simgate_journal_syncs_total"] < 20  # group commit: writes share syncs
    assert after["simgate_table_sims"] == before["simgate_table_sims"] + 20


# -- groups ---------------------------------------------------------------------------------------

#: test credentials to look for in every answer and log line
CHAP_PASSWORD = "fleet-Chap-Pass-93"
HOOK_PASSWORD = "hook-Basic-Pass-71"


async def test_group_with_chap_never_shows_the_password(server: Server) -> None:
    answers: list[httpx.Response] = []

    async def keep(response: httpx.Response) -> None:
        await response.aread()
        answers.append(response)

    group = {
        "chap": {"username": "fleet", "password": CHAP_PASSWORD},
        "onImeiLockRejected": ["log", "webhook"],
        "webhookUrl": f"http://hooks:{HOOK_PASSWORD}@127.0.0.1:9/simgate",
        "vpg": {"rendezvousPoint": "tokyo"},
    }
    async with client(server) as api:
        api.event_hooks["response"] = [keep]
        with capture_logs() as lines:
            put = await api.put("/v1/groups/fleet", json=group)
            assert put.status_code == 200, put.text
            shown = await api.get("/v1/groups/fleet")
            listed = await api.get("/v1/groups")
            created = await api.post(
                "/v1/sims", json={**NEW_SIM, "groupId": "fleet", "imeiLock": LOCKED_IMEI}
            )
            assert created.status_code == 201
            await api.get("/metrics")
            await admit(server, NEW_SIM["imsi"], OTHER_DEVICE)  # log + webhook actions
            await api.get(f"/v1/sims/{NEW_SIM['simId']}/events")
    assert put.json() == shown.json()
    view = shown.json()
    assert view["groupId"] == "fleet"
    assert view["chap"] == {"username": "fleet", "passwordSet": True}
    assert view["onImeiLockRejected"] == ["log", "webhook"]
    assert view["vpg"] == {"rendezvousPoint": "tokyo"}
    assert view["webhookUrl"] == "http://hooks:***@127.0.0.1:9/simgate"
    assert view in listed.json()["groups"]
    assert len(answers) >= 6
    for answer in answers:
        assert CHAP_PASSWORD not in answer.text, answer.url
        assert HOOK_PASSWORD not in answer.text, answer.url
    assert CHAP_PASSWORD not in repr(lines)
    assert HOOK_PASSWORD not in repr(lines)


async def test_sim_in_a_chap_group_needs_the_credentials(
    server: Server, api: httpx.AsyncClient
) -> None:
    group = {"groupId": "fleet", "chap": {"username": "fleet", "password": CHAP_PASSWORD}}
    assert (await api.put("/v1/groups/fleet", json=group)).status_code == 200
    created = await api.post("/v1/sims", json={**NEW_SIM, "groupId": "fleet"})
    assert created.status_code == 201
    assert created.json()["groupId"] == "fleet"
    imsi = NEW_SIM["imsi"]
    assert await admit(server, imsi) == ("reject", "chap-failed")
    assert await admit_chap(server, imsi, "fleet", "wrong") == ("reject", "chap-failed")
    assert await admit_chap(server, imsi, "fleet", CHAP_PASSWORD) == ("accept", None)


async def test_replacing_a_group_changes_its_sims_verdicts(
    server: Server, api: httpx.AsyncClient
) -> None:
    # SIM 9 is in the imported group "chap" (dev / s3cret)
    assert await admit_chap(server, "440100000000009", "dev", "s3cret") == ("accept", None)
    group = {"chap": {"username": "dev", "password": "rotated"}}
    assert (await api.put("/v1/groups/chap", json=group)).status_code == 200
    assert await admit_chap(server, "440100000000009", "dev", "s3cret") == (
        "reject",
        "chap-failed",
    )
    assert await admit_chap(server, "440100000000009", "dev", "rotated") == ("accept", None)
    assert (await api.put("/v1/groups/chap", json={})).status_code == 200  # CHAP removed
    assert await admit(server, "440100000000009") == ("accept", None)


async def test_deactivate_action_of_a_group_stops_a_stolen_sim(
    server: Server, api: httpx.AsyncClient
) -> None:
    group = {"onImeiLockRejected": ["deactivate"]}
    assert (await api.put("/v1/groups/guarded", json=group)).status_code == 200
    document = {**NEW_SIM, "groupId": "guarded", "imeiLock": LOCKED_IMEI}
    assert (await api.post("/v1/sims", json=document)).status_code == 201
    assert await admit(server, NEW_SIM["imsi"], OTHER_DEVICE) == ("reject", "imei-mismatch")
    async with asyncio.timeout(5):
        # ASYNC110: the action's write is seen through the API only, there is no event to await
        while (await sim(api, "new-1"))["status"] != "inactive":  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    assert await admit(server, NEW_SIM["imsi"], SAME_IMEISV) == ("reject", "sim-not-active")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"groupId": "other"}, "groupId"),
        ({"chap": {"username": "u"}}, "chap.password"),
        ({"chap": {"username": "u", "password": ""}}, "chap.password"),
        ({"onImeiLockRejected": ["explode"]}, "onImeiLockRejected[0]"),
        ({"onImeiLockRejected": ["webhook"]}, "webhookUrl"),
        ({"webhookUrl": "ftp://example.org/"}, "webhookUrl"),
        ({"vpg": {"rendezvousPoint": "mars"}}, "vpg.rendezvousPoint"),
        ({"colour": "red"}, "colour"),
    ],
    ids=[
        "groupId-mismatch",
        "chap-no-password",
        "chap-empty-password",
        "unknown-action",
        "webhook-without-url",
        "url-not-http",
        "vpg-unknown",
        "unknown-field",
    ],
)
@SHARED
async def test_bad_group_is_400_naming_the_field(
    shared_api: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    response = await shared_api.put("/v1/groups/fleet", json=body)
    assert response.status_code == 400
    assert refusal(response)["field"] == field
    assert (await shared_api.get("/v1/groups/fleet")).status_code == 404


@SHARED
async def test_unknown_group_is_404(shared_api: httpx.AsyncClient) -> None:
    response = await shared_api.get("/v1/groups/no-such-group")
    assert response.status_code == 404
    assert refusal(response)["field"] == "groupId"


# -- events ---------------------------------------------------------------------------------------


async def test_lock_rejects_and_sessions_are_listed_newest_first(
    server: Server, api: httpx.AsyncClient
) -> None:
    assert await admit(server, "440100000000003", OTHER_DEVICE) == ("reject", "imei-mismatch")
    assert await admit(server, "440100000000003", None) == ("reject", "imei-not-reported")
    assert await admit(server, "440100000000003", SAME_IMEISV) == ("accept", None)
    response = await api.get("/v1/sims/3/events")
    assert response.status_code == 200
    body = response.json()
    assert body["simId"] == "3"
    created, not_reported, mismatch = body["events"]
    assert created["event"] == "Created"
    assert created["simId"] == "3"
    assert created["imsi"] == "440100000000003"
    assert created["nas"] == "127.0.0.1"
    assert created["sessionId"] == (await sim(api, "3"))["sessionStatus"]["sessionId"]
    assert not_reported["event"] == "imeiLockRejected"
    assert not_reported["reason"] == "imei-not-reported"
    assert not_reported["reported"] is None
    assert mismatch == {
        "event": "imeiLockRejected",
        "simId": "3",
        "imsi": "440100000000003",
        "reason": "imei-mismatch",
        "reported": OTHER_IMEI,
        "locked": LOCKED_IMEI,
        "nas": "127.0.0.1",
        "time": mismatch["time"],
    }
    assert created["time"] >= not_reported["time"] >= mismatch["time"]
    newest = (await api.get("/v1/sims/3/events", params={"limit": 1})).json()["events"]
    assert newest == [created]


async def test_session_event_shows_the_imei_as_15_digits(
    server: Server, api: httpx.AsyncClient
) -> None:
    """DESIGN §3 / core.service.events: events show IMEIs as 15 digits with the Luhn digit,
    as sessionStatus and imeiLockRejected do."""
    assert await admit(server, "440100000000001", SAME_IMEISV) == ("accept", None)
    [created] = (await api.get("/v1/sims/1/events")).json()["events"]
    assert created["imei"] == (await sim(api, "1"))["sessionStatus"]["imei"] == LOCKED_IMEI


@SHARED
async def test_events_of_a_sim_without_events_and_bad_calls(
    shared_api: httpx.AsyncClient,
) -> None:
    api = shared_api
    assert (await api.get("/v1/sims/13/events")).json() == {"simId": "13", "events": []}
    unknown = await api.get("/v1/sims/no-such-sim/events")
    assert unknown.status_code == 404
    assert refusal(unknown)["field"] == "simId"
    for limit in (0, 1001, "many"):
        bad = await api.get("/v1/sims/1/events", params={"limit": limit})
        assert bad.status_code == 400
        assert refusal(bad)["field"] == "limit"


# -- snapshot -------------------------------------------------------------------------------------


@SHARED
async def test_snapshot_download_is_the_current_snapshot(shared_api: httpx.AsyncClient) -> None:
    response = await shared_api.get("/v1/snapshot")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.content.startswith(MAGIC)
    assert "snapshot-" in response.headers["content-disposition"]


async def test_compaction_keeps_writes_across_a_restart(
    servers: Servers, server: Server, api: httpx.AsyncClient
) -> None:
    before = (await api.get("/healthz")).json()
    old_snapshot = (await api.get("/v1/snapshot")).content
    assert (await api.post("/v1/sims/1/set_imei_lock", json={"imei": OTHER_IMEI})).is_success
    assert (await api.post("/v1/sims", json=NEW_SIM)).status_code == 201
    assert (await api.post("/v1/sims/3/unset_imei_lock")).is_success
    compacted = await api.post("/v1/snapshot/compact")
    assert compacted.status_code == 200, compacted.text
    seq = compacted.json()["seq"]
    assert seq >= before["sequence"] + 3
    after = (await api.get("/healthz")).json()
    assert after["snapshotSequence"] == seq
    new_snapshot = (await api.get("/v1/snapshot")).content
    assert new_snapshot.startswith(MAGIC) and new_snapshot != old_snapshot
    assert await admit(server, "440100000000001", SAME_IMEISV) == ("reject", "imei-mismatch")
    # a write after the compaction lives only in the journal
    assert (await api.post("/v1/sims/2/deactivate")).is_success

    restarted = await servers.restart(server)
    async with client(restarted) as fresh:
        assert (await sim(fresh, "1"))["imeiLock"] == {"imei": OTHER_IMEI, "allowUnreported": False}
        assert (await sim(fresh, "new-1"))["imsi"] == NEW_SIM["imsi"]
        assert (await sim(fresh, "3"))["imeiLock"] is None
        assert (await sim(fresh, "2"))["status"] == "inactive"
        health = (await fresh.get("/healthz")).json()
        assert health["sims"] == 14
        assert health["snapshotSequence"] == seq
        assert health["sequence"] == seq + 1
    assert await admit(restarted, "440100000000001", SAME_IMEISV) == ("reject", "imei-mismatch")
    assert await admit(restarted, "440100000000001", OTHER_DEVICE) == ("accept", None)
    assert await admit(restarted, NEW_SIM["imsi"]) == ("accept", None)
    assert await admit(restarted, "440100000000002") == ("reject", "sim-not-active")


def _tasks_named(name: str) -> list[int]:
    found = []
    for task in os.listdir("/proc/self/task"):
        with contextlib.suppress(FileNotFoundError), open(f"/proc/self/task/{task}/comm") as comm:
            if comm.read().strip() == name:
                found.append(int(task))
    return found


async def test_io_cpus_put_the_journal_syncs_and_the_compaction_on_those_cpus(
    servers: Servers,
) -> None:
    allowed = os.sched_getaffinity(0)
    cpu = max(allowed)
    others = set(_tasks_named("journal-syncer"))  # other tests' servers in this process
    server = await servers.start(store={"io_cpus": [cpu]})
    async with client(server) as api:
        assert (await api.post("/v1/sims/1/set_imei_lock", json={"imei": OTHER_IMEI})).is_success
        (syncer,) = [t for t in threading.enumerate() if t.name.startswith("journal-sync")]
        assert syncer.native_id is not None
        assert os.sched_getaffinity(syncer.native_id) == {cpu}
        c_syncers = set(_tasks_named("journal-syncer")) - others  # the C syncer, when built
        assert len(c_syncers) == (importlib.util.find_spec("core.store._syncer") is not None)
        for task in c_syncers:
            assert os.sched_getaffinity(task) == {cpu}
        assert os.sched_getaffinity(0) == allowed  # the loop's thread stays where it was
        compacted = await api.post("/v1/snapshot/compact")  # the child takes --cpus
        assert compacted.status_code == 200, compacted.text
        assert (await sim(api, "1"))["imeiLock"]["imei"] == OTHER_IMEI
    await servers.stop(server)
    assert not [t for t in threading.enumerate() if t.name.startswith("journal-sync")]
    assert set(_tasks_named("journal-syncer")) <= others


async def test_io_cpus_the_machine_refuses_stop_start_up_naming_the_key(
    servers: Servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(pid: int, cpus: set[int]) -> None:
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(os, "sched_setaffinity", refuse)  # as for a CPU outside the cpuset
    with pytest.raises(StartupError, match=r"^store\.io_cpus: cannot run on CPUs"):
        await servers.start(store={"io_cpus": [0]})


async def test_compaction_without_writes_keeps_the_snapshot(api: httpx.AsyncClient) -> None:
    before = (await api.get("/healthz")).json()
    response = await api.post("/v1/snapshot/compact")
    assert response.status_code == 200
    assert response.json()["seq"] == before["snapshotSequence"]
    assert (await api.get("/v1/snapshot")).content.startswith(MAGIC)


async def test_writes_made_while_the_fresh_snapshot_catches_up_are_all_kept(
    servers: Servers, server: Server, api: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The journal's records since the child began are applied to the new table in chunks,
    the loop's other work between them; writes made meanwhile are taken under the lock."""
    from core.service import compaction

    monkeypatch.setattr(compaction, "_CATCH_UP_CHUNK", 1)  # a turn of the loop per record
    assert server.writes is not None
    compactor = server.writes.compactor
    child = compactor._run_child
    during: list[Any] = []

    def create(n: int) -> Any:
        return api.post("/v1/sims", json={"simId": f"late-{n}", "imsi": f"4401000000003{n:02d}"})

    async def run_child(upto: int) -> Any:
        path = await child(upto)
        for n in range(10):  # durable and applied before the catch-up starts
            assert (await create(n)).status_code == 201
        during.extend(asyncio.ensure_future(create(n)) for n in range(10, 30))
        return path

    monkeypatch.setattr(compactor, "_run_child", run_child)
    assert (
        await api.post("/v1/sims", json={"simId": "early", "imsi": "440100000000399"})
    ).is_success
    compacted = await api.post("/v1/snapshot/compact")
    assert compacted.status_code == 200, compacted.text
    assert [answer.status_code for answer in await asyncio.gather(*during)] == [201] * 20
    assert server.writes.live.base.seq == compacted.json()["seq"]
    assert (await api.get("/v1/sims")).json()["total"] == 13 + 31
    for n in (0, 9, 10, 29):
        assert await admit(server, f"4401000000003{n:02d}") == ("accept", None)
    restarted = await servers.restart(server)
    async with client(restarted) as fresh:
        assert (await fresh.get("/v1/sims")).json()["total"] == 13 + 31
    assert await admit(restarted, "440100000000329") == ("accept", None)


async def test_a_failed_compaction_answers_500_with_the_reason_and_changes_nothing(
    server: Server, api: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.service.compaction import CompactionError

    assert server.writes is not None
    compactor = server.writes.compactor
    child = compactor._run_child

    async def failing(upto: int) -> Any:
        raise CompactionError("compact: no space left on device")

    assert (await api.post("/v1/sims/3/unset_imei_lock")).is_success
    before = server.writes.live.base.seq
    monkeypatch.setattr(compactor, "_run_child", failing)
    answer = await api.post("/v1/snapshot/compact")
    assert answer.status_code == 500
    assert "no space left on device" in answer.json()["error"]["message"], answer.text
    assert server.writes.live.base.seq == before
    assert (await sim(api, "3"))["imeiLock"] is None  # the write is still served
    metrics = await scrape(api)
    assert metrics["simgate_compaction_failures_total"] == 1
    assert metrics["simgate_compactions_total"] == 0
    monkeypatch.setattr(compactor, "_run_child", child)
    assert (await api.post("/v1/snapshot/compact")).status_code == 200
    metrics = await scrape(api)
    assert metrics["simgate_compaction_failures_total"] == 1
    assert metrics["simgate_compactions_total"] == 1
    assert metrics["simgate_compaction_last_seconds"] > 0


async def test_a_snapshot_that_does_not_open_fails_the_compaction_and_the_next_one_runs(
    servers: Servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fresh snapshot that does not open (SnapshotError) fails that compaction alone: the
    threshold watcher counts it, logs it and tries again, as it does for a failed child."""
    server = await servers.start(store={"compact_after_records": 1})
    assert server.writes is not None
    compactor = server.writes.compactor
    child = compactor._run_child
    broken = compactor.data_dir / "broken.sgs"

    async def garbage(upto: int) -> Any:
        broken.write_bytes(b"not a snapshot at all" * 10)
        return broken

    monkeypatch.setattr(compactor, "_run_child", garbage)
    async with client(server) as api:
        before = (await api.get("/healthz")).json()["snapshotSequence"]
        assert (await api.post("/v1/sims/3/unset_imei_lock")).is_success  # due: 1 record
        for _ in range(100):  # the watcher looks every second
            if (await scrape(api))["simgate_compaction_failures_total"] >= 1:
                break
            await asyncio.sleep(0.05)
        answer = await api.post("/v1/snapshot/compact")
        assert answer.status_code == 500, answer.text
        assert answer.json()["error"]["code"] == "compaction-failed"
        assert (await scrape(api))["simgate_compaction_failures_total"] >= 2
        assert (await sim(api, "3"))["imeiLock"] is None  # served from the overlay
        monkeypatch.setattr(compactor, "_run_child", child)
        for _ in range(100):
            if (await scrape(api))["simgate_compactions_total"] >= 1:
                break
            await asyncio.sleep(0.05)
        assert (await scrape(api))["simgate_compactions_total"] == 1
        assert (await api.get("/healthz")).json()["snapshotSequence"] > before
        assert (await sim(api, "3"))["imeiLock"] is None


async def test_a_failed_journal_sync_refuses_writes_with_503_and_decisions_go_on(
    servers: Servers, tmp_path: Path
) -> None:
    """The disk fails under the journal (EBADF here, EIO on a real one): the write in flight
    and every one after it are refused at once, naming the journal; nothing waits for a sync
    that cannot happen; RADIUS is still answered from memory; health says degraded."""
    lines = [*SIMS, {"simId": "first-1", "imsi": "440100000000150", "groupId": "first"}]
    server = await servers.start(lines)
    assert server.writes is not None
    journal = server.writes.journal
    good = journal._handle
    read_only = os.open(tmp_path / "read-only", os.O_RDONLY | os.O_CREAT)
    journal._handle = read_only  # every write to the segment fails
    try:
        with capture_logs() as logs:
            async with client(server) as api:
                first = await api.post("/v1/sims/3/unset_imei_lock")
                assert first.status_code == 503, first.text
                assert refusal(first)["code"] == "journal-failed"
                assert "journal failed" in refusal(first)["message"]
                later = await asyncio.wait_for(api.post("/v1/sims/2/deactivate"), 5.0)
                assert later.status_code == 503 and refusal(later)["code"] == "journal-failed"
                assert (await sim(api, "3"))["imeiLock"] is not None  # nothing was made
                assert await admit(server, "440100000000003", SAME_IMEISV) == ("accept", None)
                # lock on first connect cannot be made durable: the request is judged against
                # the table as it stands (unlocked), and it is answered, not left waiting
                reply = asyncio.wait_for(admit(server, "440100000000150", SAME_IMEISV), 5.0)
                assert await reply == ("accept", None)
                assert (await sim(api, "first-1"))["imeiLock"] is None
                health = await api.get("/healthz")
                assert health.status_code == 503
                assert health.json()["status"] == "degraded"
                assert "Bad file descriptor" in health.json()["journalError"]
                assert (await scrape(api))["simgate_journal_failed"] == 1
        assert [entry["event"] for entry in logs].count("journal_failed") == 1
    finally:
        os.close(read_only)
        journal._handle = good
    restarted = await asyncio.wait_for(servers.restart(server), 30.0)  # stop does not hang
    async with client(restarted) as fresh:
        assert (await fresh.get("/healthz")).json()["status"] == "ok"
        assert (await sim(fresh, "3"))["imeiLock"] is not None  # never acknowledged, not made
        assert (await fresh.post("/v1/sims/3/unset_imei_lock")).is_success


async def test_writes_during_a_compaction_are_all_kept(
    servers: Servers, server: Server, api: httpx.AsyncClient
) -> None:
    def create(n: int) -> Any:
        return api.post("/v1/sims", json={"simId": f"burst-{n}", "imsi": f"4401000000002{n:02d}"})

    answers = await asyncio.gather(
        *(create(n) for n in range(10)),
        api.post("/v1/snapshot/compact"),
        *(create(n) for n in range(10, 20)),
        api.post("/v1/sims/3/unset_imei_lock"),
    )
    assert [answer.status_code for answer in answers] == [201] * 10 + [200] + [201] * 10 + [200]
    assert (await api.get("/v1/sims")).json()["total"] == 33
    assert await admit(server, "440100000000219") == ("accept", None)
    restarted = await servers.restart(server)
    async with client(restarted) as fresh:
        listed = (await fresh.get("/v1/sims", params={"offset": 13})).json()["sims"]
        assert sorted(item["simId"] for item in listed) == sorted(f"burst-{n}" for n in range(20))
        assert (await sim(fresh, "3"))["imeiLock"] is None
    for n in (0, 10, 19):
        assert await admit(restarted, f"4401000000002{n:02d}") == ("accept", None)
