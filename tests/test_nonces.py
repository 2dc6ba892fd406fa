"""The nonce cache: single use across threads, safe resends of one exact write, refusals that
stick, and a journal that survives a restart."""

import threading

import pytest

from ledger.errors import AuthError, ConflictError, ForbiddenError
from ledger.nonces import NonceCache
from ledger.store import MemoryStore

NOW = 1_000_000


def _claim(cache: NonceCache, key_id: str, nonce: str, fingerprint: bytes, created: int, now: int, *,
           resend: bool) -> bool:
    """Whether the claim went through (a replay raises AuthError)."""
    try:
        cache.claim(key_id, nonce, fingerprint, created, now, resend=resend)
    except AuthError as e:
        assert e.reason == "replay"
        return False
    return True


def test_a_nonce_is_claimed_once_and_a_read_cannot_replay_it() -> None:
    cache = NonceCache(300)
    fingerprint = b"f" * 32
    assert _claim(cache, "alice", "n1", fingerprint, NOW, NOW, resend=False)
    assert not _claim(cache, "alice", "n1", fingerprint, NOW, NOW, resend=False)  # the same signed GET again
    assert not _claim(cache, "alice", "n1", b"g" * 32, NOW, NOW, resend=True)  # another request, same nonce
    assert _claim(cache, "bob", "n1", fingerprint, NOW, NOW, resend=False)  # nonces are per key


def test_the_exact_same_write_may_come_again() -> None:
    cache = NonceCache(300)
    assert _claim(cache, "alice", "n1", b"f" * 32, NOW, NOW, resend=True)
    assert _claim(cache, "alice", "n1", bytes(b"f" * 32), NOW, NOW, resend=True)


def _race(cache: NonceCache, nonce: str, claimants: int) -> list[bool]:
    """Each of `claimants` threads claims `nonce` (with its own signature) at once; their answers."""
    start = threading.Barrier(claimants)
    wins: list[bool] = []

    def claim(i: int) -> None:
        start.wait()
        wins.append(_claim(cache, "alice", nonce, bytes([i]) * 32, NOW, NOW, resend=False))

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(claimants)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return wins


def test_of_many_concurrent_claims_exactly_one_wins() -> None:
    for round_ in range(50):
        assert sorted(_race(NonceCache(300), f"n{round_}", 16)) == [False] * 15 + [True]


def test_nonces_are_forgotten_once_their_signatures_expire() -> None:
    cache = NonceCache(300)
    assert _claim(cache, "alice", "n1", b"f" * 32, NOW, NOW, resend=False)
    assert not _claim(cache, "alice", "n1", b"f" * 32, NOW, NOW + 300, resend=False)  # still in the window
    assert _claim(cache, "alice", "n2", b"f" * 32, NOW + 301, NOW + 301, resend=False)  # prunes n1
    assert _claim(cache, "alice", "n1", b"f" * 32, NOW + 301, NOW + 301, resend=False)  # too old to matter now


def test_a_refused_write_gets_its_refusal_again_and_never_passes() -> None:
    cache = NonceCache(300)
    cache.claim("alice", "n1", b"f" * 32, NOW, NOW, resend=True)
    cache.refuse("alice", "n1", b"f" * 32, ConflictError("problem p already exists"), NOW)
    with pytest.raises(ConflictError, match="problem p already exists"):
        cache.claim("alice", "n1", b"f" * 32, NOW, NOW + 10, resend=True)  # the same signed write again
    assert not _claim(cache, "alice", "n1", b"g" * 32, NOW, NOW + 10, resend=True)  # another one: a replay


def test_a_refusal_never_overwrites_the_nonce_of_another_signature() -> None:
    cache = NonceCache(300)
    cache.claim("alice", "n1", b"f" * 32, NOW, NOW, resend=True)
    cache.refuse("alice", "n1", b"g" * 32, ForbiddenError("no"), NOW)
    cache.claim("alice", "n1", b"f" * 32, NOW, NOW, resend=True)  # the first signature's resend still passes


def test_reads_and_refusals_survive_a_restart_through_the_journal() -> None:
    journal = MemoryStore()
    cache = NonceCache(300, journal, now_s=NOW)
    cache.claim("alice", "read", b"r" * 32, NOW, NOW, resend=False)
    cache.claim("alice", "write", b"w" * 32, NOW, NOW, resend=True)
    cache.refuse("alice", "write", b"w" * 32, AuthError("signature created 400 s in the future", reason="clock"), NOW)
    restarted = NonceCache(300, journal, now_s=NOW + 60)
    assert not _claim(restarted, "alice", "read", b"r" * 32, NOW, NOW + 60, resend=False)
    with pytest.raises(AuthError, match="in the future") as refused:
        restarted.claim("alice", "write", b"w" * 32, NOW, NOW + 60, resend=True)
    assert refused.value.reason == "clock"
    # Once the window has passed, the journal forgets them too.
    later = NonceCache(300, journal, now_s=NOW + 301)
    assert _claim(later, "alice", "read", b"r" * 32, NOW + 301, NOW + 301, resend=False)
    assert [key for key, _ in journal.scan(b"n/")] == [b"n/alice\x00read"]
