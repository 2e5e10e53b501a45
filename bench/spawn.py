"""How long the event loop stalls while the server starts its compaction child.

The compaction child (core.service.compaction) is a new process. uvloop's subprocess support
spawns it with fork(), which copies the page tables of the whole server (the mapped snapshot,
the sessions) while the loop waits; subprocess.Popen uses vfork(). This benchmark touches
``--mebibytes`` of memory (as a server with a warm table has), then starts ``--children``
trivial children each way while a task measures the longest gap between its 0.5 ms ticks:

    asyncio        loop.subprocess_exec (uvloop: fork), on the loop
    popen-loop     subprocess.Popen on the loop's thread, waited for in a worker thread
    popen-thread   subprocess.Popen and the wait both in a worker thread (what the server does)

    .venv/bin/python bench/spawn.py [--mebibytes 1024] [--children 5]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time

import uvloop


async def _ticks(gaps: list[float]) -> None:
    last = time.perf_counter()
    while True:
        await asyncio.sleep(0.0005)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now


def _popen() -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", "pass"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


async def _spawn(mode: str) -> None:
    if mode == "asyncio":
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "pass",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        await process.communicate()
    elif mode == "popen-loop":
        await asyncio.to_thread(_popen().communicate)
    else:
        await asyncio.to_thread(lambda: _popen().communicate())


async def _measure(children: int) -> dict[str, float]:
    longest: dict[str, float] = {}
    for mode in ("asyncio", "popen-loop", "popen-thread"):
        gaps: list[float] = []
        ticker = asyncio.create_task(_ticks(gaps))
        await asyncio.sleep(0.1)
        for _ in range(children):
            await _spawn(mode)
        ticker.cancel()
        longest[mode] = max(gaps)
    return longest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mebibytes", type=int, default=1024, help="memory touched first")
    parser.add_argument("--children", type=int, default=5, help="children started per mode")
    args = parser.parse_args()
    memory = bytearray(args.mebibytes << 20)
    for at in range(0, len(memory), 4096):  # resident, with page table entries
        memory[at] = 1
    longest = uvloop.run(_measure(args.children))
    for mode, gap in longest.items():
        print(f"{mode:13} longest event-loop gap {gap * 1000:6.1f} ms ({args.mebibytes} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
