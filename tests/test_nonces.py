"""The in-memory nonce cache: single use across threads, safe resends of one exact write."""

import threading

from ledger.nonces import NonceCache

NOW = 1_000_000


def test_a_nonce_is_claimed_once_and_a_read_cannot_replay_it() -> None:
    cache = NonceCache(300)
    fingerprint = b"f" * 32
    assert cache.claim("alice", "n1", fingerprint, NOW, NOW, resend=False)
    assert not cache.claim("alice", "n1", fingerprint, NOW, NOW, resend=False)  # the same signed GET again
    assert not cache.claim("alice", "n1", b"g" * 32, NOW, NOW, resend=True)  # another request, same nonce
    assert cache.claim("bob", "n1", fingerprint, NOW, NOW, resend=False)  # nonces are per key


def test_the_exact_same_write_may_come_again() -> None:
    cache = NonceCache(300)
    assert cache.claim("alice", "n1", b"f" * 32, NOW, NOW, resend=True)
    assert cache.claim("alice", "n1", bytes(b"f" * 32), NOW, NOW, resend=True)


def _race(cache: NonceCache, nonce: str, claimants: int) -> list[bool]:
    """Each of `claimants` threads claims `nonce` (with its own signature) at once; their answers."""
    start = threading.Barrier(claimants)
    wins: list[bool] = []

    def claim(i: int) -> None:
        start.wait()
        wins.append(cache.claim("alice", nonce, bytes([i]) * 32, NOW, NOW, resend=False))

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
    assert cache.claim("alice", "n1", b"f" * 32, NOW, NOW, resend=False)
    assert not cache.claim("alice", "n1", b"f" * 32, NOW, NOW + 300, resend=False)  # still in the window
    assert cache.claim("alice", "n2", b"f" * 32, NOW + 301, NOW + 301, resend=False)  # prunes n1
    assert cache.claim("alice", "n1", b"f" * 32, NOW + 301, NOW + 301, resend=False)  # too old to matter now
