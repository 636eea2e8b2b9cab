"""``run_until``: work in a spawned process that ends by a deadline (what bounds ``--tune-budget``)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from training.bounded import ChildFailed, Send, run_until


def counts_to(send: Send, n: int) -> None:
    for value in range(n):
        send(value)


def sleeps(send: Send, seconds: float) -> None:
    send("started")
    time.sleep(seconds)
    send("too late")


def raises(send: Send, text: str) -> None:
    send("before")
    raise ValueError(text)


def exits(send: Send, code: int) -> None:
    os._exit(code)


def test_messages_arrive_in_order_and_the_end_is_reported() -> None:
    got: list[int] = []
    assert run_until(time.monotonic() + 120, counts_to, (50,), got.append) is True
    assert got == list(range(50))


def test_work_past_the_deadline_is_stopped_and_what_came_before_is_kept() -> None:
    got: list[str] = []
    began = time.monotonic()
    assert run_until(began + 20, sleeps, (600,), got.append) is False
    assert got == ["started"]
    assert time.monotonic() - began < 25  # stopped at its deadline, not after the child's 600 s


def test_an_error_in_the_child_is_raised_with_its_traceback() -> None:
    got: list[str] = []
    with pytest.raises(ChildFailed, match=r"(?s)Traceback.*ValueError: the log has no item_id"):
        run_until(time.monotonic() + 120, raises, ("the log has no item_id",), got.append)
    assert got == ["before"]


def test_a_child_that_dies_is_reported_at_once_not_at_the_deadline() -> None:
    began = time.monotonic()
    with pytest.raises(ChildFailed, match="exit code 3"):
        run_until(began + 300, exits, (3,), lambda _message: None)
    assert time.monotonic() - began < 120


def draws_a_progress_bar(send: Send, steps: int) -> None:
    from tqdm import tqdm

    for step in tqdm(range(steps), disable=False):
        send(step)


def test_progress_bars_in_the_child_leave_no_semaphore_behind(tmp_path) -> None:
    """A child's tqdm bar used to leave a named semaphore: "leaked semaphore objects" at exit, on stderr."""
    script = tmp_path / "run.py"
    script.write_text(
        "import time\n"
        "from tests.test_bounded import draws_a_progress_bar\n"
        "from training.bounded import run_until\n"
        "if __name__ == '__main__':\n"
        "    assert run_until(time.monotonic() + 120, draws_a_progress_bar, (3,), lambda _m: None)\n")
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, str(script)], cwd=root, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(root)})
    assert done.returncode == 0, done.stderr
    assert "resource_tracker" not in done.stderr, done.stderr
