"""Fixtures of the codec tests.

- ``parse``: the walk under test, once the pure-Python ``wire.parse_python`` and once the C
  ``core.radius._speedups.parse`` (skipped when the extension is not built), whichever one
  ``wire.parse`` is in this process.
"""

from __future__ import annotations

from typing import Protocol

import pytest

from core.radius.native import extension
from core.radius.wire import Packet, parse_python


class Parse(Protocol):
    def __call__(self, data: bytes, indexed_vendor: int | None = None) -> Packet: ...


NOT_BUILT = pytest.mark.skipif(extension is None, reason="core.radius._speedups is not built")


@pytest.fixture(params=[pytest.param("python"), pytest.param("c", marks=NOT_BUILT)])
def parse(request: pytest.FixtureRequest) -> Parse:
    if request.param == "python":
        return parse_python
    from core.radius import _speedups

    return _speedups.parse
