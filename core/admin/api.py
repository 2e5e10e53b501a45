"""The HTTP side: the admin API (``/v1``), ``/metrics`` and ``/healthz``.

Owns: the web application (FastAPI, served by uvicorn in the same event loop as the UDP
server): routes, bearer-token check, request bodies, and the mapping of refusals to 4xx answers
whose message names the field (``{"error": {"code", "message", "field"}}``). What a call does is
``Control``'s business (core.service.control); this module only speaks HTTP.

Invariants: a scrape writes no log line; no secret (client secrets, CHAP passwords, the token)
ever appears in a response; every /v1 route requires the token, compared in constant time.

Must not: import the UDP transport, the pipeline or the wire codec.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

from fastapi import Body, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp, Receive, Scope, Send

from core import __version__
from core.metrics import CONTENT_TYPE, render
from core.service.control import Control, Refused

_PUBLIC = ("/metrics", "/healthz", "/openapi.json")


def create_app(
    metrics: CollectorRegistry,
    health: Callable[[], dict[str, Any]],
    control: Control | None = None,
    token: str = "",
) -> FastAPI:
    """Build the HTTP application over the process's metrics, health and control."""
    app = FastAPI(title="simgate admin API", version=__version__, docs_url=None, redoc_url=None)
    _guard(app, token)
    _errors(app)

    @app.get("/metrics", include_in_schema=False)
    async def get_metrics() -> Response:
        return Response(render(metrics), media_type=CONTENT_TYPE)

    @app.get("/healthz")
    async def get_health() -> JSONResponse:
        """200 while the server does all it promises; 503 when it is degraded (decisions are
        still served, writes are not: the body says why)."""
        body = health()
        return JSONResponse(body, status_code=200 if body.get("status") == "ok" else 503)

    if control is not None:
        _sim_routes(app, control)
        _other_routes(app, control)
    return app


def _guard(app: FastAPI, token: str) -> None:
    app.add_middleware(_RequireToken, token=token)


class _RequireToken:
    """The bearer-token check in front of every /v1 route, as plain ASGI middleware.

    perf: as ``@app.middleware("http")`` (Starlette's BaseHTTPMiddleware) it ran every request
    through an anyio task group and memory streams: a fifth of an API write's CPU (py-spy on
    bench/writes.py --only api).
    """

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in _PUBLIC or not path.startswith("/v1"):
            await self.app(scope, receive, send)
            return
        if not self.token:
            refusal = _error(403, "forbidden", "the admin API is off: set http.token", "token")
            await refusal(scope, receive, send)
            return
        given = next((value for name, value in scope["headers"] if name == b"authorization"), b"")
        if not hmac.compare_digest(given, self.expected):
            refusal = _error(401, "unauthorized", "missing or wrong bearer token", "authorization")
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _errors(app: FastAPI) -> None:
    @app.exception_handler(Refused)
    async def refused(_: Request, error: Refused) -> JSONResponse:
        return _error(error.status, error.code, error.message, error.field)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {}
        if first.get("type") == "json_invalid":  # its loc is ("body", offset in the text)
            return _error(400, "invalid", "body: not valid JSON", "body")
        location = [str(part) for part in first.get("loc", ()) if part not in ("body", "query")]
        field = ".".join(location) or "body"
        return _error(400, "invalid", f"{field}: {first.get('msg', 'invalid')}", field)


def _error(status: int, code: str, message: str, field: str | None) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message, "field": field}}, status_code=status
    )


def _sim_routes(app: FastAPI, control: Control) -> None:
    @app.get("/v1/sims")
    async def list_sims(limit: int = 100, offset: int = 0) -> dict[str, Any]:
        return control.list_sims(offset, limit)

    @app.post("/v1/sims", status_code=201)
    async def create_sim(document: dict[str, Any] = Body(...)) -> dict[str, Any]:  # noqa: B008
        return await control.create_sim(document)

    @app.get("/v1/sims/{sim_id}")
    async def get_sim(sim_id: str) -> dict[str, Any]:
        return control.sim(sim_id)

    for action, status in (
        ("activate", "active"),
        ("deactivate", "inactive"),
        ("set_to_standby", "standby"),
        ("suspend", "suspended"),
        ("terminate", "terminated"),
    ):
        _status_route(app, control, action, status)

    @app.post("/v1/sims/set_imei_lock")
    async def lock_many(request: dict[str, Any] = Body(...)) -> dict[str, Any]:  # noqa: B008
        unknown = set(request) - {"simIds", "allowUnreported"}
        if unknown:  # an "imei" here would be ignored: each SIM takes its own session's
            raise Refused(400, "invalid", f"unknown field {min(unknown)!r}", min(unknown))
        return await control.lock_many(request.get("simIds"), request.get("allowUnreported"))

    @app.post("/v1/sims/{sim_id}/set_imei_lock")
    async def set_lock(sim_id: str, request: dict[str, Any] | None = Body(None)) -> dict[str, Any]:  # noqa: B008
        request = request or {}
        unknown = set(request) - {"imei", "allowUnreported"}
        if unknown:
            raise Refused(400, "invalid", f"unknown field {min(unknown)!r}", min(unknown))
        return await control.set_lock(sim_id, request.get("imei"), request.get("allowUnreported"))

    @app.post("/v1/sims/{sim_id}/unset_imei_lock")
    async def unset_lock(sim_id: str) -> dict[str, Any]:
        return await control.unset_lock(sim_id)

    @app.get("/v1/sims/{sim_id}/events")
    async def events(sim_id: str, limit: int = 100) -> dict[str, Any]:
        return control.events(sim_id, limit)


def _status_route(app: FastAPI, control: Control, action: str, status: str) -> None:
    async def change(sim_id: str) -> dict[str, Any]:
        return await control.set_status(sim_id, status)

    app.post(f"/v1/sims/{{sim_id}}/{action}", name=action)(change)


def _other_routes(app: FastAPI, control: Control) -> None:
    @app.put("/v1/groups/{group_id}")
    async def put_group(group_id: str, document: dict[str, Any] = Body(...)) -> dict[str, Any]:  # noqa: B008
        return await control.put_group(group_id, document)

    @app.get("/v1/groups/{group_id}")
    async def get_group(group_id: str) -> dict[str, Any]:
        return control.group(group_id)

    @app.get("/v1/groups")
    async def list_groups() -> dict[str, Any]:
        return control.groups()

    @app.get("/v1/snapshot")
    async def download_snapshot() -> FileResponse:
        path = control.snapshot_path()
        return FileResponse(path, media_type="application/octet-stream", filename=path.name)

    @app.post("/v1/snapshot/compact")
    async def compact() -> dict[str, Any]:
        return await control.compact()
