"""Logging: the one structlog configuration of the process.

Owns: ``configure(level, format)``: JSON lines in production, readable console output on a
terminal, and a filtering bound logger so that a disabled level costs a no-op call
(structlog performance guide).

Invariants: nothing on the datagram path logs per packet (STYLE §2.3 rule 6); this module only
sets up where lines go.

Must not: import any other core module.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def configure(level: str = "info", output: str = "auto") -> None:
    """Configure structlog for the process; ``output`` is json, console or auto."""
    console = output == "console" or (output == "auto" and sys.stderr.isatty())
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if console:
        processors.append(structlog.dev.ConsoleRenderer())
    else:
        processors += [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
