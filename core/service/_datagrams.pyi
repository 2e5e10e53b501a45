"""Type stub of the C extension core/service/_datagrams.c (Linux)."""

from collections.abc import Callable, Sequence

class Pump:
    def __init__(
        self,
        fd: int,
        handle: Callable[[bytes, tuple[str, int], float], bytes | None],
        bounds: Sequence[float],
        batch: int = 64,
        *,
        prefetch: Callable[[bytes], None] | None = None,
        imsi_vsa: int = 0,
        user_name: int = 0,
    ) -> None: ...
    def pump(self) -> int: ...
    def take_counters(
        self,
    ) -> tuple[list[int], float, int, int, BaseException | None, int]: ...

def imsi_keys(datagrams: Sequence[bytes], imsi_vsa: int, user_name: int, /) -> bytes: ...
