"""Working beside a training run: one compute thread at the lowest CPU priority.

On a machine with few cores, a chat reply computed with every core at normal priority takes the
cores a training run is using. `lower_this_thread()` makes the calling thread compute with one
thread (PyTorch's intra-op thread count is a per-thread OpenMP setting, so other threads keep
theirs) and puts it in Linux's idle scheduling class (SCHED_IDLE: it runs in the CPU time nothing
else wants; nice 19 where that class is missing). Both are per thread on Linux. A nice value only
weighs a thread against others, so a nice-19 thread still takes about 12% of a core from a
training process that itself runs at nice 10; an idle-class thread takes next to nothing. The
price is that a preview reply is slow while training keeps every core busy. A thread's priority
cannot be raised again without privileges, so this is for threads made for the job;
`in_background(fn)` makes one.
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
    """One compute thread and the idle scheduling class for the calling thread, for good."""
    # Without OpenMP, PyTorch's thread count is one setting for the whole process: leave it.
    if torch.backends.openmp.is_available():
        torch.set_num_threads(1)
    thread = threading.get_native_id()
    # Not on this system (or not allowed): one thread is still gentler.
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, thread, LOWEST_PRIORITY)
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(thread, os.SCHED_IDLE, os.sched_param(0))


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
