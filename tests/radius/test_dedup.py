"""core.radius.dedup.ReplyCache: RFC 5080 §2.2.2 duplicate detection, with time as a parameter."""

from __future__ import annotations

import pytest

from core.radius.dedup import IN_PROGRESS, ReplyCache

KEY = (("192.0.2.1", 40000), 7)
AUTHENTICATOR = bytes.fromhex("0f403f9473978057bd83d5cb98f4227a")
OTHER_AUTHENTICATOR = bytes.fromhex("2aee86f08d0d55969ca5978e0d3367a2")
REPLY = b"\x02\x07\x00\x14" + bytes(16)


def test_new_request_is_registered() -> None:
    cache = ReplyCache(ttl=10)

    assert cache.begin(KEY, AUTHENTICATOR, now=0.0) is None
    assert len(cache) == 1


def test_duplicate_of_a_request_in_progress_is_in_progress() -> None:
    cache = ReplyCache(ttl=10)
    cache.begin(KEY, AUTHENTICATOR, now=0.0)

    result = cache.begin(KEY, AUTHENTICATOR, now=1.0)

    assert result == IN_PROGRESS == b""
    assert result is not None


def test_duplicate_of_an_answered_request_gets_the_cached_reply() -> None:
    cache = ReplyCache(ttl=10)
    cache.begin(KEY, AUTHENTICATOR, now=0.0)
    cache.finish(KEY, AUTHENTICATOR, REPLY, now=0.5)

    assert cache.begin(KEY, AUTHENTICATOR, now=1.0) == REPLY
    assert cache.begin(KEY, AUTHENTICATOR, now=2.0) == REPLY
    assert len(cache) == 1


def test_new_authenticator_on_the_same_key_purges_the_old_entry() -> None:
    # "If [...] the Request Authenticator differs, it is a new request and the cache entry MUST
    # be purged" (RFC 5080 §2.2.2, REFERENCE §1.12).
    cache = ReplyCache(ttl=10)
    cache.begin(KEY, AUTHENTICATOR, now=0.0)
    cache.finish(KEY, AUTHENTICATOR, REPLY, now=0.5)

    assert cache.begin(KEY, OTHER_AUTHENTICATOR, now=1.0) is None
    assert len(cache) == 1
    # The late reply to the purged request does not land on the new one.
    cache.finish(KEY, AUTHENTICATOR, REPLY, now=1.5)
    assert cache.begin(KEY, OTHER_AUTHENTICATOR, now=2.0) == IN_PROGRESS


@pytest.mark.parametrize(
    "other_key",
    [(("192.0.2.2", 40000), 7), (("192.0.2.1", 40001), 7), (("192.0.2.1", 40000), 8)],
    ids=["other address", "other port", "other identifier"],
)
def test_keys_differing_in_address_port_or_identifier_are_independent(
    other_key: tuple[tuple[str, int], int],
) -> None:
    cache = ReplyCache(ttl=10)
    cache.begin(KEY, AUTHENTICATOR, now=0.0)
    cache.finish(KEY, AUTHENTICATOR, REPLY, now=0.0)

    assert cache.begin(other_key, AUTHENTICATOR, now=1.0) is None
    assert cache.begin(KEY, AUTHENTICATOR, now=1.0) == REPLY


def test_answered_entry_expires_ttl_after_the_reply() -> None:
    cache = ReplyCache(ttl=5)
    cache.begin(KEY, AUTHENTICATOR, now=100.0)
    cache.finish(KEY, AUTHENTICATOR, REPLY, now=101.0)

    assert cache.begin(KEY, AUTHENTICATOR, now=105.9) == REPLY
    assert cache.begin(KEY, AUTHENTICATOR, now=106.0) is None  # expired: a new request


def test_request_in_progress_expires_after_ttl() -> None:
    cache = ReplyCache(ttl=5)
    cache.begin(KEY, AUTHENTICATOR, now=0.0)

    assert cache.begin(KEY, AUTHENTICATOR, now=4.9) == IN_PROGRESS
    assert cache.begin(KEY, AUTHENTICATOR, now=5.0) is None


def test_expire_removes_only_expired_entries() -> None:
    cache = ReplyCache(ttl=5)
    cache.begin((("192.0.2.1", 1), 1), AUTHENTICATOR, now=0.0)
    cache.begin((("192.0.2.1", 1), 2), AUTHENTICATOR, now=1.0)
    cache.begin((("192.0.2.1", 1), 3), AUTHENTICATOR, now=3.0)

    assert cache.expire(now=6.0) == 2
    assert len(cache) == 1
    assert cache.begin((("192.0.2.1", 1), 3), AUTHENTICATOR, now=6.0) == IN_PROGRESS
    assert cache.expire(now=8.0) == 1
    assert len(cache) == 0


def test_expire_stops_after_its_limit() -> None:
    cache = ReplyCache(ttl=5)
    for identifier in range(10):
        cache.begin((("192.0.2.1", 1), identifier), AUTHENTICATOR, now=float(identifier) / 10)

    assert cache.expire(now=6.0, limit=4) == 4
    assert len(cache) == 6
    assert cache.expire(now=6.0) == 6


def test_capacity_evicts_the_oldest_entry() -> None:
    cache = ReplyCache(ttl=30, capacity=3)
    keys = [(("192.0.2.1", 1812), identifier) for identifier in range(4)]
    for second, key in enumerate(keys):
        cache.begin(key, AUTHENTICATOR, now=float(second))

    assert len(cache) == 3
    for key in keys[1:]:
        assert cache.begin(key, AUTHENTICATOR, now=5.0) == IN_PROGRESS
    assert cache.begin(keys[0], AUTHENTICATOR, now=5.0) is None  # evicted, so new again


def test_full_cache_drops_every_expired_entry_before_evicting() -> None:
    cache = ReplyCache(ttl=5, capacity=3)
    first, second, live, new = ((("192.0.2.1", 1812), identifier) for identifier in range(4))
    cache.begin(first, AUTHENTICATOR, now=0.0)
    cache.begin(second, AUTHENTICATOR, now=1.0)
    cache.begin(live, AUTHENTICATOR, now=4.0)

    cache.begin(new, AUTHENTICATOR, now=6.5)

    assert len(cache) == 2  # both expired entries went, not just the oldest one
    assert cache.begin(live, AUTHENTICATOR, now=6.5) == IN_PROGRESS
    assert cache.begin(new, AUTHENTICATOR, now=6.5) == IN_PROGRESS


def test_forget_drops_a_registration_with_the_same_authenticator_only() -> None:
    cache = ReplyCache(ttl=10)
    cache.begin(KEY, AUTHENTICATOR, now=0.0)

    cache.forget(KEY, OTHER_AUTHENTICATOR)
    assert cache.begin(KEY, AUTHENTICATOR, now=1.0) == IN_PROGRESS

    cache.forget(KEY, AUTHENTICATOR)
    assert len(cache) == 0
    assert cache.begin(KEY, AUTHENTICATOR, now=1.0) is None


def test_finish_without_begin_stores_nothing() -> None:
    cache = ReplyCache(ttl=10)

    cache.finish(KEY, AUTHENTICATOR, REPLY, now=0.0)

    assert len(cache) == 0


@pytest.mark.parametrize("ttl", [0.0, -1.0, 30.5, 3600.0])
def test_ttl_outside_0_to_30_seconds_is_refused(ttl: float) -> None:
    with pytest.raises(ValueError, match="ttl"):
        ReplyCache(ttl=ttl)


@pytest.mark.parametrize("ttl", [0.001, 5.0, 30.0])
def test_ttl_within_0_to_30_seconds_is_taken(ttl: float) -> None:
    assert ReplyCache(ttl=ttl).ttl == ttl


@pytest.mark.parametrize("capacity", [0, -1])
def test_capacity_below_one_is_refused(capacity: int) -> None:
    with pytest.raises(ValueError, match="capacity"):
        ReplyCache(capacity=capacity)
