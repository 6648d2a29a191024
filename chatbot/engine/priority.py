"""Working beside a training run: one compute thread at the lowest CPU priority.

On a machine with few cores, a chat reply computed with every core at normal priority takes the
cores a training run is using. `lower_this_thread()` makes the calling thread compute with one
thread (PyTorch's intra-op thread count is a per-thread OpenMP setting, so other threads keep
theirs) and gives it the lowest scheduling priority (nice 19; on Linux a thread has its own), so
the scheduler runs it in the time training leaves. A thread's priority cannot be raised again
without privileges, so this is for threads made for the job; `in_background(fn)` makes one.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from typing import TypeVar

import torch

__all__ = ["LOWEST_PRIORITY", "lower_this_thread", "in_background"]

LOWEST_PRIORITY = 19
T = TypeVar("T")


def lower_this_thread() -> None:
    """One compute thread and the lowest CPU priority for the calling thread, for good."""
    # Without OpenMP, PyTorch's thread count is one setting for the whole process: leave it.
    if torch.backends.openmp.is_available():
        torch.set_num_threads(1)
    # No setpriority on this system (or not allowed): one thread is still gentler.
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOWEST_PRIORITY)


def in_background(work: Callable[[], T]) -> T:
    """Run `work` in a new thread lowered by `lower_this_thread`; return or raise what it does."""
    outcome: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        lower_this_thread()
        try:
            outcome.append(work())
        except BaseException as exc:  # handed to the caller's thread as is
            failure.append(exc)

    thread = threading.Thread(target=run, name="brandvoice-background", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]
