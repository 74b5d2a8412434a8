"""Starting an event loop: one home, so every entry point (the generator and the sim) runs on
uvloop the same way, with the open files its sockets need.

uvloop is a dependency, but loadlab stays runnable without it (plain asyncio). It is never
installed as a policy: ``asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())`` and
``uvloop.install()`` are deprecated since uvloop 0.21 (policies are deprecated in Python 3.14);
a loop factory handed to ``asyncio.Runner`` is the supported way, and nothing happens on import.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's ``new_event_loop`` when installed, else None (asyncio's default loop)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - a dependency; plain asyncio still works
        return None
    return uvloop.new_event_loop


def runner() -> asyncio.Runner:
    """An ``asyncio.Runner`` on uvloop, for callers that run several coroutines in one loop."""
    return asyncio.Runner(loop_factory=loop_factory())


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on a new uvloop event loop (``asyncio.run`` semantics)."""
    with runner() as r:
        return r.run(main)


def raise_open_file_limit() -> int:
    """Raise the soft open-file limit (RLIMIT_NOFILE) to the hard one; return the new soft limit.

    Every watch is a socket, and 10,000 simulated nodes' watches pass the usual soft limit of
    1,024 long before they pass the hard one (in the generator and in the sim alike). An
    unlimited hard limit is not a number the kernel accepts for files (it caps them at
    ``fs.nr_open``), so then the soft limit is left as it is.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
