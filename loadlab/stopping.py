"""Stopping a run early, once, from a signal or from inside: one home for both run paths.

``stop_on_signals()`` (inside the run's main task) makes SIGINT and SIGTERM call ``Stopper.stop``
with the signal's name, which records why the run ends and cancels the main task; the task's
``finally`` then writes what was measured. A second signal while it unwinds exits at once (the
embedded control plane dies with us: it watches its parent).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterator
from typing import Any

from loadlab.errors import EXIT_INTERRUPTED, EXIT_TERMINATED

SIGNAL_EXIT = {"SIGINT": EXIT_INTERRUPTED, "SIGTERM": EXIT_TERMINATED}
"""The exit code of a run stopped by each signal (128 + its number, the shell's convention)."""
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopper:
    """Ends a run early, once: records why (``SIGINT``, ``SIGTERM``, a write error) and cancels
    the run's main task."""

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self._task = task
        self.reason: str | None = None

    def stop(self, reason: str) -> None:
        if self.reason is not None:
            if reason in SIGNAL_EXIT:
                os._exit(SIGNAL_EXIT[reason])
            return
        self.reason = reason
        self._task.cancel()

    @property
    def exit_code(self) -> int | None:
        """The exit code a signal that stopped the run asks for; None otherwise."""
        return SIGNAL_EXIT.get(self.reason) if self.reason is not None else None


@contextlib.contextmanager
def stop_on_signals() -> Iterator[Stopper]:
    """Within the running loop's current task: SIGINT and SIGTERM stop it through the yielded
    ``Stopper``; the handlers are removed on the way out."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None, "stop_on_signals() runs inside a task"
    stopper = Stopper(task)
    for signum in _SIGNALS:
        loop.add_signal_handler(signum, stopper.stop, signal.Signals(signum).name)
    try:
        yield stopper
    finally:
        for signum in _SIGNALS:
            loop.remove_signal_handler(signum)
