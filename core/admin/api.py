"""The HTTP side: ``/metrics`` and ``/healthz`` now, the admin API as it grows.

Owns: the web application (FastAPI, served by uvicorn in the same event loop as the UDP
server); it is the only module that imports the web framework.

Invariants: a scrape writes no log line (hynek/prometheus-async ``access_log=None``); no secret
ever appears in a response.

Must not: import the UDP transport, the pipeline or the wire codec.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import CollectorRegistry

from core import __version__
from core.metrics import CONTENT_TYPE, render


def create_app(metrics: CollectorRegistry, health: Callable[[], dict[str, Any]]) -> FastAPI:
    """Build the HTTP application over the process's metrics registry and health facts."""
    app = FastAPI(title="simgate", version=__version__, docs_url=None, redoc_url=None)

    @app.get("/metrics", include_in_schema=False)
    async def get_metrics() -> Response:
        return Response(render(metrics), media_type=CONTENT_TYPE)

    @app.get("/healthz")
    async def get_health() -> dict[str, Any]:
        return health()

    return app
