"""A small client of the admin HTTP API, for the ``simgate`` CLI.

Owns: building requests (bearer token, JSON), and turning answers into ``Answer`` values or
``ApiError`` with the exit code scripts rely on (see ``core.cli``).

Must not: import the web framework or the server's modules (it talks HTTP only).
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Final

#: exit codes of API commands
EXIT_REFUSED: Final = 1  # the API answered 4xx (bad request, conflict)
EXIT_UNREACHABLE: Final = 3  # no answer, or 5xx
EXIT_NOT_FOUND: Final = 4  # 404: no such SIM or group


class ApiError(Exception):
    """The API refused, or could not be reached; ``exit_code`` says which."""

    def __init__(self, message: str, exit_code: int, status: int | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.status = status


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: Any
    raw: bytes


class AdminClient:
    def __init__(self, base_url: str, token: str, timeout: float = 30.0) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ApiError(f"{base_url}: the admin API URL must be http:// or https://", 2)
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def get(self, path: str) -> Answer:
        return self.call("GET", path)

    def post(self, path: str, body: Any = None, *, timeout: float | None = None) -> Answer:
        return self.call("POST", path, body, timeout=timeout)

    def put(self, path: str, body: Any) -> Answer:
        return self.call("PUT", path, body)

    def call(
        self, method: str, path: str, body: Any = None, *, timeout: float | None = None
    ) -> Answer:
        """Send one request; return the answer, or raise ``ApiError`` for 4xx/5xx/no answer.

        ``timeout``: seconds to wait for the answer instead of the client's own.
        """
        data = None if body is None else json.dumps(body).encode()
        try:
            request = urllib.request.Request(self.base_url + path, data=data, method=method)
        except ValueError as error:  # e.g. "http://[::1" (an unclosed IPv6 literal)
            raise ApiError(f"{self.base_url}: not a usable URL: {error}", 2) from None
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            wait = self.timeout if timeout is None else timeout
            with urllib.request.urlopen(request, timeout=wait) as response:
                raw = response.read()
                return Answer(response.status, _decode(raw, response.headers), raw)
        except urllib.error.HTTPError as error:
            raw = error.read()
            message = _message(_decode(raw, error.headers)) or error.reason
            code = (
                EXIT_NOT_FOUND
                if error.code == 404
                else (EXIT_REFUSED if 400 <= error.code < 500 else EXIT_UNREACHABLE)
            )
            raise ApiError(f"{error.code}: {message}", code, error.code) from None
        except http.client.InvalidURL as error:  # e.g. a space in the --api URL's path
            raise ApiError(f"{self.base_url}: not a usable URL: {error}", 2) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
            reason = getattr(error, "reason", error)
            raise ApiError(f"cannot reach {self.base_url}: {reason}", EXIT_UNREACHABLE) from None


def _decode(raw: bytes, headers: Any) -> Any:
    if "json" in (headers.get("Content-Type") or ""):
        try:
            return json.loads(raw)
        except ValueError:
            return None
    return None


def _message(body: Any) -> str | None:
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return str(error.get("message"))
        detail = body.get("detail")
        if detail is not None:
            return str(detail)
    return None
