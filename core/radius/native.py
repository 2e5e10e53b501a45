"""The optional C extension ``core.radius._speedups``, loaded once here, or None.

Owns: the choice between the C hot path and the pure-Python one. ``pip install`` builds the
extension when a C compiler is there (setup.py declares it ``optional``); without it, or with
``SIMGATE_PURE_PYTHON=1`` in the environment, ``speedups`` is None and wire.py and auth.py run
their pure-Python code. ``extension`` is the built module either way, for the tests.

Invariants: the pure-Python code is the specification; the C functions return the same values
and raise the same ``MalformedPacket`` (tests/radius/test_speedups.py). The choice is made once,
at import, for the whole process.

Must not: import anything from core (wire.py and auth.py import it).
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Final

#: set to 1 to run the pure-Python code even when the extension is built (CI runs both)
PURE_PYTHON_ENV: Final = "SIMGATE_PURE_PYTHON"


def _load() -> ModuleType | None:
    try:
        from core.radius import _speedups
    except ImportError:  # not built: no compiler at install time, or a source checkout
        return None
    return _speedups


#: the extension if it is built, whatever the environment says (wire.py configures it, and the
#: tests compare it with the pure-Python code)
extension: Final = _load()
#: the extension the hot path uses: None when it is not built or SIMGATE_PURE_PYTHON=1
speedups: Final = None if os.environ.get(PURE_PYTHON_ENV, "") not in ("", "0") else extension
