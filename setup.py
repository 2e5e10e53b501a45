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

PORTABLE = ["core.radius._speedups", "core.service._sessions", "core.store._index"]
LINUX = [
    "core.service._datagrams",  # recvmmsg/sendmmsg: the RADIUS ports' batched receiver
    "core.store._syncer",  # the journal's writes and fsyncs off the interpreter lock
]
names = PORTABLE + (LINUX if sys.platform.startswith("linux") else [])
extensions = [
    Extension(
        name,
        sources=[name.replace(".", "/") + ".c"],
        extra_compile_args=[] if sys.platform == "win32" else ["-O2"],
        optional=True,
    )
    for name in names
]

setup(ext_modules=extensions)
