"""Type stub of the C extension core/service/_datagrams.c (Linux)."""

from collections.abc import Callable, Sequence

class Pump:
    def __init__(
        self,
        fd: int,
        handle: Callable[[bytes, tuple[str, int], float], bytes | None],
        bounds: Sequence[float],
        batch: int = 64,
    ) -> None: ...
    def pump(self) -> int: ...
    def take_counters(self) -> tuple[list[int], float, int, int, BaseException | None]: ...
