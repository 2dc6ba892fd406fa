"""Stopping `orchestrator serve` on Ctrl-C (SIGINT) or SIGTERM, whenever it comes, without a hang.

What went wrong before (found with tests/test_stopping.py, which sends Ctrl-C through a
pseudo-terminal at random moments):

- In the command's own process Python turns SIGINT into KeyboardInterrupt wherever the main
  thread happens to be. Raised inside an at-fork hook (the fork that checks the ledger before
  serving), a weakref callback of the import system or a finalizer, it is printed as "Exception
  ignored" and lost: gunicorn then started as if nothing had happened, and served on.
- A gunicorn worker starts with its master's handlers, which only queue a signal for the
  master's loop: a SIGINT, or the SIGQUIT the master sends on Ctrl-C, arriving between the fork
  and the worker's own handlers was dropped, and the master waited its 30 s graceful timeout and
  SIGKILLed the worker ("Perhaps out of memory?"). Once uvicorn's worker has reset them to the
  defaults, one arriving while the ledger opens killed the worker there. And uvicorn, once it has
  shut down, raises the signal it caught again under those defaults: the worker died by it and
  never closed the ledger.

So: the command records SIGINT and SIGTERM (:func:`defer`) from its first line until gunicorn's
master installs its own handlers, and stops at its next step (:func:`check`); each worker is
forked with SIGINT, SIGTERM and SIGQUIT blocked (:func:`block_for_fork`); they stay pending until
uvicorn's handlers are in place (:func:`unblock`, orchestrator/worker.py), and the worker then
shuts down and exits normally, closing the ledger.
"""

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

#: What stops the command: Ctrl-C and `kill`.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: What stops a worker: those, and the master's quick shutdown.
WORKER_SIGNALS = frozenset((signal.SIGINT, signal.SIGTERM, signal.SIGQUIT))

_received: list[int] = []
_deferring = False
_forward_to: int | None = None
_blocked_for_fork = False
_hook_registered = False


class Interrupted(KeyboardInterrupt):
    """A stop signal was received; ``signum`` says which (the exit status is 128 + signum)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _record(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)
    if _forward_to is not None:
        _forward(_forward_to)


def _forward(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGINT)
    except OSError:  # already gone
        pass


def defer() -> None:
    """From now on SIGINT and SIGTERM are recorded instead of acting where they land (main thread)."""
    global _deferring
    for signum in STOP_SIGNALS:
        signal.signal(signum, _record)
    _deferring = True


def check() -> None:
    """Raise :class:`Interrupted` if a stop signal was recorded."""
    if _received:
        raise Interrupted(_received[0])


def restore() -> None:
    """Python's own handling again (KeyboardInterrupt on SIGINT, the default on SIGTERM), for the
    commands that stop wherever they are; raises :class:`Interrupted` for a signal recorded meanwhile."""
    global _deferring
    if not _deferring:
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _deferring = False
    check()


@contextmanager
def forwarding(pid: int) -> Iterator[None]:
    """While the block runs, a stop signal recorded here is passed on to child ``pid`` as SIGINT
    (it may have been sent to this process alone)."""
    global _forward_to
    _forward_to = pid
    try:
        if _received:
            _forward(pid)
        yield
    finally:
        _forward_to = None


def interrupt_in_child() -> None:
    """In a forked child that does a step of the command: SIGINT and SIGTERM raise KeyboardInterrupt
    (a signal recorded in the parent before the fork does too)."""
    global _forward_to, _deferring
    _forward_to = None
    _deferring = False
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.default_int_handler)
    if _received:
        raise KeyboardInterrupt


def block_for_fork() -> None:
    """Block the worker's stop signals before gunicorn forks a worker (its ``pre_fork`` hook): the
    child starts with them blocked, and this process unblocks them as soon as the fork is done."""
    global _blocked_for_fork, _hook_registered
    if not _hook_registered:
        os.register_at_fork(after_in_parent=_after_fork_in_parent)
        _hook_registered = True
    signal.pthread_sigmask(signal.SIG_BLOCK, WORKER_SIGNALS)
    _blocked_for_fork = True


def _after_fork_in_parent() -> None:
    global _blocked_for_fork
    if _blocked_for_fork:
        _blocked_for_fork = False
        signal.pthread_sigmask(signal.SIG_UNBLOCK, WORKER_SIGNALS)


def unblock() -> None:
    """In a worker whose handlers are in place: the stop signals that arrived since the fork are
    handled now."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, WORKER_SIGNALS)
