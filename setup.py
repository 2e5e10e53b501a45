"""Declare the optional C extension; every other piece of metadata lives in pyproject.toml.

``core/radius/_speedups.c`` speeds up the hot path (parse, Message-Authenticator, reply
signing); ``core/store/_index.c`` looks IMSIs up in a mapped snapshot;
``core/service/_sessions.c`` keeps each SIM's session in a slot written in place;
``core/service/_datagrams.c`` (Linux) receives and answers datagrams in batches;
``core/store/_syncer.c`` (Linux) writes and fsyncs the journal off the interpreter lock.
All are optional: without a C compiler the build skips them and simgate runs its pure-Python
code and the event loop's datagram transport, which behave the same (core/radius/native.py,
core/service/udp.py).
"""

from __future__ import annotations

import sys

from setuptools import Extension, setup

extensions = [
    Extension(
        "core.radius._speedups",
        sources=["core/radius/_speedups.c"],
        extra_compile_args=[] if sys.platform == "win32" else ["-O2"],
        optional=True,
    )
]
extensions.append(
    Extension(
        "core.service._sessions",
        sources=["core/service/_sessions.c"],
        extra_compile_args=[] if sys.platform == "win32" else ["-O2"],
        optional=True,
    )
)
extensions.append(
    Extension(
        "core.store._index",
        sources=["core/store/_index.c"],
        extra_compile_args=[] if sys.platform == "win32" else ["-O2"],
        optional=True,
    )
)
if sys.platform.startswith("linux"):
    # recvmmsg/sendmmsg: the RADIUS ports' batched receiver (core/service/udp.py)
    extensions.append(
        Extension(
            "core.service._datagrams",
            sources=["core/service/_datagrams.c"],
            extra_compile_args=["-O2"],
            optional=True,
        )
    )
    # the journal's writes and fsyncs in a thread that never takes the interpreter lock
    extensions.append(
        Extension(
            "core.store._syncer",
            sources=["core/store/_syncer.c"],
            extra_compile_args=["-O2"],
            optional=True,
        )
    )

setup(ext_modules=extensions)
