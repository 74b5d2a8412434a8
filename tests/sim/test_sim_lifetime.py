"""The embedded sim never outlives the loadlab that started it, and listens beyond loopback only
when asked to.

The lifetime tests run real processes: an intermediate "loadlab" (``python -c`` calling
``start_sim_process``) that the test kills, and the sim it started, watched by PID with psutil.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from loadlab.errors import UsageError
from loadlab.sim.cli import check_listen_host
from loadlab.sim.config import is_loopback_host
from loadlab.sim.lifeline import EXIT_PARENT_GONE, LIFELINE_ENV, ParentLifeline
from tests.acceptance.helpers import loadlab

# An orphaned sim must be gone within a second of its parent's death; twice that leaves room for
# a busy 2-core machine to schedule it.
GONE_WITHIN_S = 2.0
START_TIMEOUT_S = 60.0
POLL_S = 0.02
# At 5,000 nodes x 30 pods seeding takes seconds (README: ready in 6.5 s, 665 MiB peak), so a
# parent killed once the sim is past 100 MiB dies mid-seeding; after imports alone it holds ~55 MiB.
BIG_SIM = ("--nodes", "5000", "--pods-per-node", "30")
SEEDING_RSS_BYTES = 100 * 2**20

# The intermediate parent: starts the sim from its main thread (as loadlab does), prints the sim's
# pid once ready, then waits to be killed. An interrupt while waiting is reported, after which it
# stays alive, so the test sees what start_sim_process itself did with the sim.
PARENT_SCRIPT = """
import signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
from loadlab.sim.process import start_sim_process
try:
    sim = start_sim_process(sys.argv[1:], timeout_s=120)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    time.sleep(60)
else:
    print(f"ready {sim.pid}", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def spawned() -> Iterator[list[psutil.Process]]:
    """Processes a test started (directly or not); any still alive at the end is killed."""
    procs: list[psutil.Process] = []
    yield procs
    for proc in procs:
        if proc.is_running():
            proc.kill()


def start_parent(sim_args: tuple[str, ...], spawned: list[psutil.Process]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", PARENT_SCRIPT, *sim_args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    spawned.append(psutil.Process(proc.pid))
    return proc


def read_line(proc: subprocess.Popen[str], timeout_s: float) -> str:
    """The next line ``proc`` prints, waiting at most ``timeout_s``."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
    assert ready, f"no output within {timeout_s} s"
    return proc.stdout.readline().strip()


def is_gone(proc: psutil.Process) -> bool:
    """Exited: no such process (or a new one with its pid), or a zombie nobody has reaped yet
    (an orphan's new parent, PID 1 of a container, may never reap it)."""
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_until_gone(proc: psutil.Process, timeout_s: float = GONE_WITHIN_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if is_gone(proc):
            return True
        time.sleep(POLL_S)
    return is_gone(proc)


def wait_for_seeding_sim(
    parent: subprocess.Popen[str], spawned: list[psutil.Process]
) -> psutil.Process:
    """The sim ``parent`` is starting, once it is busy seeding (well past its imports)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        children = psutil.Process(parent.pid).children()
        if children:
            sim = children[0]
            spawned.append(sim)
            while time.monotonic() < deadline:
                if sim.memory_info().rss > SEEDING_RSS_BYTES:
                    return sim
                time.sleep(POLL_S)
        time.sleep(POLL_S)
    raise AssertionError(f"the sim did not start seeding within {START_TIMEOUT_S} s")


def kill_and_reap(parent: subprocess.Popen[str]) -> str:
    """SIGKILL ``parent``; return what it printed that was not yet read."""
    parent.kill()
    parent.wait(10)
    assert parent.stdout is not None
    rest = parent.stdout.read()
    parent.stdout.close()
    return rest


@pytest.mark.realtime
def test_ready_sim_exits_when_its_parent_is_sigkilled(spawned: list[psutil.Process]) -> None:
    parent = start_parent(("--nodes", "3", "--pods-per-node", "2"), spawned)
    word, pid = read_line(parent, START_TIMEOUT_S).split()
    assert word == "ready"
    sim = psutil.Process(int(pid))
    spawned.append(sim)
    assert not is_gone(sim)

    kill_and_reap(parent)

    assert wait_until_gone(sim), f"sim {sim.pid} outlived its SIGKILLed parent"


@pytest.mark.realtime
def test_seeding_sim_exits_when_its_parent_is_sigkilled(spawned: list[psutil.Process]) -> None:
    parent = start_parent(BIG_SIM, spawned)
    sim = wait_for_seeding_sim(parent, spawned)

    unread = kill_and_reap(parent)

    assert "ready" not in unread, "the sim finished seeding before the parent was killed"
    assert wait_until_gone(sim), f"sim {sim.pid} outlived its parent, SIGKILLed mid-seeding"


@pytest.mark.realtime
def test_interrupt_while_waiting_for_the_sim_kills_and_reaps_it(
    spawned: list[psutil.Process],
) -> None:
    parent = start_parent(BIG_SIM, spawned)
    sim = wait_for_seeding_sim(parent, spawned)

    parent.send_signal(signal.SIGINT)

    assert read_line(parent, START_TIMEOUT_S) == "interrupted"
    # The parent is alive and has already reaped the sim: no zombie, no parent-death signal.
    assert parent.poll() is None
    with pytest.raises(psutil.NoSuchProcess):
        psutil.Process(sim.pid).status()
    kill_and_reap(parent)


@pytest.mark.realtime
def test_lifeline_pipe_alone_ends_the_sim_when_the_parent_end_closes(
    spawned: list[psutil.Process],
) -> None:
    # The parent (this test) stays alive, so the parent-death signal cannot fire: only the pipe
    # watcher can end the child, as it would where there is no prctl.
    lifeline = ParentLifeline()
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from loadlab.sim.lifeline import hold_from_environment\n"
            "import time\n"
            "hold_from_environment()\n"
            "print('holding', flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **lifeline.child_env()},
        pass_fds=(lifeline.child_fd,),
    )
    spawned.append(psutil.Process(child.pid))
    try:
        lifeline.close_child_end()
        assert read_line(child, START_TIMEOUT_S) == "holding"

        lifeline.cut()

        assert child.wait(GONE_WITHIN_S) == EXIT_PARENT_GONE
    finally:
        lifeline.cut()
        assert child.stdout is not None
        child.stdout.close()


@pytest.mark.realtime
def test_sim_whose_parent_died_before_it_held_the_lifeline_exits_at_once() -> None:
    # A pid that is alive but not our parent: exactly what the child sees after re-parenting.
    env = {**os.environ, LIFELINE_ENV: f"{os.getppid()}:"}
    done = subprocess.run(
        [sys.executable, "-m", "loadlab.sim", *BIG_SIM, "--api-port", "0", "--dns-port", "0"],
        env=env,
        capture_output=True,
        timeout=START_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == EXIT_PARENT_GONE
    assert done.stdout == b""


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        pytest.param("127.0.0.1", True, id="ipv4-loopback"),
        pytest.param("127.8.9.10", True, id="ipv4-loopback-net"),
        pytest.param("::1", True, id="ipv6-loopback"),
        pytest.param("localhost", True, id="localhost"),
        pytest.param("LocalHost", True, id="localhost-any-case"),
        pytest.param("0.0.0.0", False, id="ipv4-any"),
        pytest.param("::", False, id="ipv6-any"),
        pytest.param("192.0.2.7", False, id="ipv4-other"),
        pytest.param("localhost.example", False, id="other-name"),
        pytest.param("", False, id="empty"),
    ],
)
def test_only_loopback_literals_and_localhost_count_as_loopback(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def test_non_loopback_host_without_the_flag_is_a_usage_error_that_says_what_to_do() -> None:
    with pytest.raises(UsageError, match="--allow-non-loopback"):
        check_listen_host("0.0.0.0", allow_non_loopback=False)


def test_non_loopback_host_with_the_flag_gives_a_one_line_warning() -> None:
    warning = check_listen_host("0.0.0.0", allow_non_loopback=True)
    assert warning is not None
    assert "beyond loopback" in warning
    assert "\n" not in warning


def test_loopback_host_needs_no_flag_and_gets_no_warning() -> None:
    assert check_listen_host("127.0.0.1", allow_non_loopback=False) is None


def assert_one_usage_line(done: subprocess.CompletedProcess[str], prefix: str) -> str:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(prefix), done.stderr
    assert done.stdout == ""
    return lines[0]


@pytest.mark.realtime
def test_loadlab_sim_refuses_a_non_loopback_host_in_one_line() -> None:
    line = assert_one_usage_line(loadlab("sim", "--host", "0.0.0.0", timeout_s=60), "loadlab: ")
    assert "0.0.0.0" in line
    assert "--allow-non-loopback" in line


@pytest.mark.realtime
def test_loadlab_sim_refuses_a_non_loopback_host_from_its_config_file(tmp_path: Path) -> None:
    config = tmp_path / "sim.yaml"
    config.write_text("host: 0.0.0.0\n")
    done = loadlab("sim", "--config", str(config), timeout_s=60)
    assert "--allow-non-loopback" in assert_one_usage_line(done, "loadlab: ")


@pytest.mark.realtime
def test_python_m_loadlab_sim_refuses_a_non_loopback_host_in_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "loadlab.sim", "--host", "::"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "--allow-non-loopback" in assert_one_usage_line(done, "loadlab sim: ")
