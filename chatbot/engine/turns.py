"""Who uses the model next: a first-come, first-served queue with a bound on how many may wait.

Generation keeps the machine busy (compute, or memory bandwidth when decoding), so two requests
running at once would only slow each other down; the engine runs one at a time. A plain lock would
do that but serves waiters in no particular order and cannot refuse newcomers when the line is
long, so this keeps an explicit line: the request at its head holds the model, the rest wait in
arrival order, and a waiter whose reader went away leaves the line at once.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

from chatbot.errors import BusyError

__all__ = ["TurnQueue", "Ticket"]


class Ticket:
    """One request's place in line. `cancel()` may be called from any thread."""

    def __init__(self, queue: TurnQueue) -> None:
        self._queue = queue
        self.cancelled = False

    def cancel(self) -> None:
        self._queue._cancel(self)


class TurnQueue:
    """A FIFO line for the model: `enter()` takes a place (or refuses), `turn()` waits for it."""

    def __init__(self, max_waiting: int) -> None:
        self._max_waiting = max_waiting
        self._line: deque[Ticket] = deque()
        self._changed = threading.Condition()

    @property
    def pending(self) -> int:
        """Requests running or waiting."""
        with self._changed:
            return len(self._line)

    def enter(self, *, bounded: bool = True) -> Ticket:
        """Take a place in line, or raise `BusyError` (a message to show) if `max_waiting` wait.

        `bounded=False` is for the engine's own housekeeping (switching adapters), which must not be
        refused because chat requests are queued.
        """
        with self._changed:
            waiting = max(len(self._line) - 1, 0)
            if bounded and self._line and waiting >= self._max_waiting:
                others = len(self._line)
                raise BusyError(
                    f"The model is busy with {others} other request{'s' if others > 1 else ''}; "
                    "try again in a moment."
                )
            ticket = Ticket(self)
            self._line.append(ticket)
            return ticket

    @contextmanager
    def turn(self, ticket: Ticket) -> Iterator[bool]:
        """Wait until `ticket` heads the line; yield False if it was cancelled meanwhile.

        The place is given up when the block ends, whatever happens inside it.
        """
        try:
            with self._changed:
                self._changed.wait_for(lambda: ticket.cancelled or self._line[0] is ticket)
            yield not ticket.cancelled
        finally:
            self._leave(ticket)

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the model for housekeeping, after every request already in line."""
        ticket = self.enter(bounded=False)
        with self.turn(ticket):
            yield

    def _cancel(self, ticket: Ticket) -> None:
        with self._changed:
            ticket.cancelled = True
            self._changed.notify_all()

    def _leave(self, ticket: Ticket) -> None:
        with self._changed:
            if ticket in self._line:
                self._line.remove(ticket)
            self._changed.notify_all()
