"""Work that must end by a deadline, run in a child process that is stopped when the time is up.

A candidate of the model search (``training.tuning``) can take longer than the time that is left, and a
fit is one library call (EASE's closed form, an ALS solver) that cannot be asked to stop half way. So the
search runs in a spawned process: the parent receives every result as soon as it is measured, and when
the deadline comes it stops the child and keeps what it has received. ``--tune-budget`` is then a bound,
not a hint (a cooperative check between candidates overran it by a whole fit: 27 s for a 10 s budget).

``spawn``, not ``fork``: the parent may already hold BLAS / OpenMP thread pools, which do not survive a
fork; a spawned child starts clean (about a second of imports, counted in the budget).
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from typing import Any

#: Sends one message from the child to the parent (picklable objects only).
Send = Callable[[Any], None]


class ChildFailed(RuntimeError):
    """The child raised (its traceback is the message) or died without a word."""


def run_until(deadline: float, target: Callable[..., None], args: tuple[Any, ...],
              on_message: Callable[[Any], None]) -> bool:
    """Run ``target(send, *args)`` in a spawned process until it returns or ``deadline`` (a
    ``time.monotonic()`` value) passes; ``on_message`` gets what it sends, in order, in this process.

    True when ``target`` returned, False when it was stopped at the deadline. ``target`` must be a
    module-level function (the child imports it by name)."""
    with tempfile.TemporaryDirectory(prefix="tailor-bounded-") as scratch:
        # The arguments (a whole purchase log) go through a file, not spawn's start-up pipe: a child that
        # dies while starting would leave ``start()`` blocked writing them into that pipe.
        arguments = os.path.join(scratch, "arguments.pickle")
        with open(arguments, "wb") as out:
            pickle.dump(args, out, protocol=pickle.HIGHEST_PROTOCOL)
        return _run(deadline, target, arguments, on_message)


def _run(deadline: float, target: Callable[..., None], arguments: str, on_message: Callable[[Any], None]) -> bool:
    context = multiprocessing.get_context("spawn")
    receiving, sending = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(sending, target, arguments), daemon=True, name="tailor-bounded")
    child.start()
    sending.close()  # the child holds the only writer once it has started
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not wait([receiving, child.sentinel], timeout=left):
                return False
            try:  # ready with nothing to read: the child is gone (its sentinel) and left no message
                kind, payload = receiving.recv() if receiving.poll() else ("died", None)
            except EOFError:
                kind, payload = "died", None
            if kind == "died":
                child.join()
                raise ChildFailed(f"the bounded process ended without a result (exit code {child.exitcode})")
            if kind == "done":
                return True
            if kind == "error":
                raise ChildFailed(payload)
            on_message(payload)
    finally:
        if child.is_alive():
            child.kill()
        child.join()
        receiving.close()


def _child(sending: Connection, target: Callable[..., None], arguments: str) -> None:
    _thread_only_progress_lock()
    try:
        with open(arguments, "rb") as source:
            args = pickle.load(source)
        target(lambda message: sending.send(("message", message)), *args)
        sending.send(("done", None))
    except BrokenPipeError:  # the parent stopped listening (it was interrupted): nothing to report to
        pass
    except BaseException:
        sending.send(("error", traceback.format_exc()))
    finally:
        sending.close()


def _thread_only_progress_lock() -> None:
    """tqdm (implicit's fits draw their bars with it) guards bars with a multiprocessing lock by default: a
    named semaphore that a child never releases, so the resource tracker warned of a "leaked semaphore" at
    the end of every tuned ``tailor train``. One process draws the child's bars: a thread lock is enough."""
    from tqdm import tqdm

    tqdm.set_lock(threading.RLock())
