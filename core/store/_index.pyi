"""Type stub of the C extension core/store/_index.c."""

import mmap

from core.store.records import Subscriber

class Finder:
    def __init__(
        self,
        buffer: mmap.mmap | bytes,
        index_at: int,
        slots: int,
        records_at: int,
        statuses: tuple[object, ...],
        subscriber: type[Subscriber],
        overlay: dict[int, Subscriber],
    ) -> None: ...
    def __call__(self, imsi: int, /) -> Subscriber | None: ...
    def prefetch(self, keys: bytes, /) -> None: ...
