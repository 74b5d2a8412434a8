"""The sim's lifeline to the loadlab that started it: when that parent dies, the sim exits at once.

A 5,000-node sim holds ~400 MB; left behind by a SIGKILLed or interrupted loadlab it would hold
them until someone noticed. ``start_sim_process`` therefore opens a ``ParentLifeline`` and hands the
child its end in the environment variable ``LOADLAB_SIM_LIFELINE="PARENT_PID:FD"`` (internal: only
``start_sim_process`` sets it; ``python -m loadlab.sim`` reads and removes it). The child calls
``hold_from_environment()`` first thing, before its heavy imports and the seeding, and then dies
with its parent through two independent mechanisms:

- Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` (prctl(2)). The kernel sends the signal, so it works
  even while the child's main thread is busy seeding. Then the race check: if the parent died
  between our fork and the prctl call, we have already been re-parented, ``os.getppid()`` no
  longer names it, and we exit. Caveat (prctl(2)): the signal fires when the parent *thread* that
  forked us exits, not the process; ``start_sim_process`` must be called from a thread that lives
  as long as the sim should (loadlab calls it from the main thread).
- Everywhere: a pipe. The parent keeps the write end open for the sim's lifetime and never writes;
  the child's watcher thread blocks reading the other end. When the parent dies the kernel closes
  its end, the read returns (EOF), and the thread ends the process with ``os._exit``. This also
  covers platforms without prctl. A ``fork()`` without exec in the parent would copy the write end
  and keep the sim alive as long as that copy; loadlab does not do that.

Imports only the standard library, so holding the lifeline costs the child no start-up time.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
from collections.abc import MutableMapping

LIFELINE_ENV = "LOADLAB_SIM_LIFELINE"
# Not from a reference: any code distinct from the sim's own (0 done, 1 crash, 2 usage) so a test
# can tell that the lifeline ended the process. Nobody else reads it: the parent is gone.
EXIT_PARENT_GONE = 70
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class ParentLifeline:
    """The parent's side: a pipe whose write end stays open here as long as the sim should live.

    ``child_fd`` goes to the child (``pass_fds``) and ``child_env()`` into its environment; after
    spawning, ``close_child_end()``. ``cut()`` closes the write end, which ends the child.
    """

    def __init__(self) -> None:
        # os.pipe() fds are non-inheritable (PEP 446): only the child we pass child_fd to gets it,
        # and no other child of this process gets the write end.
        self.child_fd, self._write_fd = os.pipe()
        self._child_end_open = True
        self._write_end_open = True

    def child_env(self) -> dict[str, str]:
        """The environment entry telling the child which parent to die with, and its read end."""
        return {LIFELINE_ENV: f"{os.getpid()}:{self.child_fd}"}

    def close_child_end(self) -> None:
        """Once the child has its copy, the parent's copy of the read end only wastes an fd."""
        if self._child_end_open:
            self._child_end_open = False
            os.close(self.child_fd)

    def cut(self) -> None:
        """Close both ends; a child still holding the lifeline exits. Idempotent."""
        self.close_child_end()
        if self._write_end_open:
            self._write_end_open = False
            os.close(self._write_fd)


def _set_parent_death_signal(sig: signal.Signals) -> bool:
    """``prctl(PR_SET_PDEATHSIG, sig)``; False where there is no prctl (not Linux) or it fails."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)) == 0
    except (OSError, AttributeError):  # no libc symbol: the pipe still covers us
        return False


def _exit_when_readable(fd: int) -> None:
    # The parent never writes: any return (EOF when its end closes) or error means it is gone.
    with contextlib.suppress(OSError):
        os.read(fd, 1)
    os._exit(EXIT_PARENT_GONE)


def die_with_parent(parent_pid: int, fd: int | None) -> None:
    """Exit this process as soon as ``parent_pid`` dies (see the module docstring).

    ``fd`` is the read end of the parent's ``ParentLifeline``, or None for the signal alone.
    Exits at once if the parent is already gone.
    """
    _set_parent_death_signal(signal.SIGKILL)
    # The race check: a parent that died before the prctl above will never trigger it.
    if os.getppid() != parent_pid:
        os._exit(EXIT_PARENT_GONE)
    if fd is not None:
        # A daemon thread: it must not keep a sim that is stopping normally alive.
        threading.Thread(
            target=_exit_when_readable, args=(fd,), name="loadlab-sim-lifeline", daemon=True
        ).start()


def hold_from_environment(environ: MutableMapping[str, str] = os.environ) -> None:
    """If ``LOADLAB_SIM_LIFELINE`` is set, remove it and ``die_with_parent`` as it says.

    A malformed value is a bug in whoever set it; we exit with a message rather than run without
    a lifeline.
    """
    value = environ.pop(LIFELINE_ENV, None)
    if value is None:
        return
    pid_text, _, fd_text = value.partition(":")
    try:
        parent_pid = int(pid_text)
        fd = int(fd_text) if fd_text else None
    except ValueError:
        sys.exit(f"loadlab sim: {LIFELINE_ENV}={value!r} is not PARENT_PID:FD (internal)")
    die_with_parent(parent_pid, fd)
