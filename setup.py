"""Declare the optional C extension; every other piece of metadata lives in pyproject.toml.

``core/radius/_speedups.c`` speeds up the hot path (parse, Message-Authenticator, reply
signing). It is optional: without a C compiler the build skips it and simgate runs its
pure-Python code, which behaves the same (core/radius/native.py).
"""

from __future__ import annotations

import sys

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "core.radius._speedups",
            sources=["core/radius/_speedups.c"],
            extra_compile_args=[] if sys.platform == "win32" else ["-O2"],
            optional=True,
        )
    ]
)
