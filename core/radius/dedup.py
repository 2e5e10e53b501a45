"""The RFC 5080 §2.2.2 duplicate detector and reply cache.

Owns: remembering, per receiving socket, which (client address, port, Identifier) carried which
Request Authenticator, and the reply sent for it, for ``ttl`` seconds.

Invariants:
- A retransmission (same address, port, Identifier and authenticator) of an answered request
  gets the cached reply bytes and causes no second side effect; one still in progress is dropped.
- The same key with a different authenticator is a new request: the old entry is purged.
- Memory is bounded: at most ``capacity`` entries; the oldest go first.
- Time is a parameter (``now``), never read here.

Must not: import asyncio, socket, time, logging or metrics.
"""

from __future__ import annotations

from typing import Final

#: Tag of an entry whose request is still being processed (no reply yet).
IN_PROGRESS: Final = b""

#: expired entries removed by a store into a full cache (before it evicts a live one)
_EXPIRE_WHEN_FULL: Final = 64

Address = tuple[str, int]
Key = tuple[Address, int]


class ReplyCache:
    """Reply cache for one receiving socket; an entry is (authenticator, reply, expires)."""

    __slots__ = ("_entries", "capacity", "ttl")

    def __init__(self, ttl: float = 10.0, capacity: int = 262_144) -> None:
        if not 0 < ttl <= 30:
            raise ValueError("reply cache ttl must be in (0, 30] seconds (RFC 5080 §2.2.2)")
        if capacity < 1:
            # begin() evicts from a full cache; with no room at all there is nothing to evict.
            raise ValueError("reply cache capacity must be at least 1")
        self.ttl = ttl
        self.capacity = capacity
        self._entries: dict[Key, tuple[bytes, bytes, float]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def begin(self, key: Key, authenticator: bytes, now: float) -> bytes | None:
        """Register a request; return None if it is new, else the cached reply.

        Returns ``IN_PROGRESS`` (empty bytes) for a duplicate of a request not answered yet.
        """
        cached = self.lookup(key, authenticator, now)
        if cached is None:
            self.store(key, authenticator, IN_PROGRESS, now)
        return cached

    def lookup(self, key: Key, authenticator: bytes, now: float) -> bytes | None:
        """Return the cached reply (or ``IN_PROGRESS``) of a retransmission, None for a new
        request; a new authenticator on the key purges the old entry.

        A caller that answers synchronously (no other datagram can be handled before it is
        done) may skip registering and ``store`` the reply right away.
        """
        entries = self._entries
        entry = entries.get(key)
        if entry is not None:
            if entry[0] == authenticator and entry[2] > now:
                return entry[1]
            del entries[key]  # a new request on the same identifier purges the old one
        return None

    def store(self, key: Key, authenticator: bytes, reply: bytes, now: float) -> None:
        """Cache ``reply`` (or ``IN_PROGRESS``) for a request, keeping the cache bounded."""
        entries = self._entries
        if len(entries) >= self.capacity and key not in entries:
            self.expire(now, _EXPIRE_WHEN_FULL)
            if len(entries) >= self.capacity:
                del entries[next(iter(entries))]
        entries[key] = (authenticator, reply, now + self.ttl)

    def finish(self, key: Key, authenticator: bytes, reply: bytes, now: float) -> None:
        """Store the reply sent for a request registered with ``begin``."""
        entries = self._entries
        entry = entries.get(key)
        if entry is not None and entry[0] == authenticator:
            entries[key] = (authenticator, reply, now + self.ttl)

    def forget(self, key: Key, authenticator: bytes) -> None:
        """Drop a registration whose request will never be answered (e.g. it was dropped)."""
        entry = self._entries.get(key)
        if entry is not None and entry[0] == authenticator:
            del self._entries[key]

    def expire(self, now: float, limit: int | None = None) -> int:
        """Remove expired entries from the oldest end, at most ``limit``; return how many went.

        Entries sit in registration order, which is expiry order up to the reject delay, so
        the sweep stops at the first live entry. Removing many at once takes milliseconds
        (~0.5 µs each), so the server's sweep passes a limit and comes back.
        """
        entries = self._entries
        expired: list[Key] = []
        budget = len(entries) if limit is None else limit
        for key, entry in entries.items():
            if entry[2] > now or budget <= 0:
                break
            budget -= 1
            expired.append(key)
        for key in expired:
            del entries[key]
        return len(expired)
