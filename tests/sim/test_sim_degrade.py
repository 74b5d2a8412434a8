"""The sim's documented slow-down: SIGUSR1 toggles it, ``degrade.after_s`` turns it on by time.

While degraded every API request waits ``degrade.extra_latency_s`` more and /readyz answers 500
naming the failed check; the health of the process (/healthz) and /metrics are untouched. The wait
itself is checked exactly, on a FakeClock in process; then real sim processes take real signals,
where the only timing asserted is the added latency's lower bound (the server sleeps that long).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import aiohttp
import pytest

from loadlab.clock import NS_PER_S, FakeClock
from loadlab.errors import ProfileError
from loadlab.sim.apiserver.app import SimApiServer
from loadlab.sim.config import sim_config_from_dict
from loadlab.sim.process import SimProcess, start_sim_process
from loadlab.testing.waiting import wait_for
from tests.sim.conftest import RunWithApi, SimConfigFactory
from tests.sim.helpers import FREE_COST
from tests.sim.secured import Reply, call

pytestmark = pytest.mark.realtime

# Long enough that a loopback GET of three nodes never takes it by itself, short enough to keep
# each test to a few seconds.
EXTRA_S = 1.5
TOGGLE_TIMEOUT_S = 15.0
POLL_S = 0.02
FAILED_CHECK = "[-]loadlab-degraded failed: reason withheld"


def test_degraded_api_requests_wait_the_extra_latency_and_health_paths_do_not(
    run_with_api: RunWithApi, sim_config: SimConfigFactory
) -> None:
    clock = FakeClock()
    extra_ns = int(EXTRA_S * NS_PER_S)
    # Housekeeping far off, so the only deadline on the clock is the degraded request's.
    config = sim_config(
        overload={"cost": FREE_COST},
        api={"housekeeping_interval_s": 3600},
        degrade={"extra_latency_s": EXTRA_S},
    )

    async def body(api: SimApiServer) -> None:
        api.degraded = True
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{api.url}/healthz") as r:
                healthz = r.status
            async with s.get(f"{api.url}/metrics") as r:
                metrics = r.status
            async with s.get(f"{api.url}/readyz") as r:
                readyz = (r.status, await r.text())
            slow = asyncio.ensure_future(s.get(f"{api.url}/api/v1/nodes"))
            await wait_for(lambda: clock.next_deadline_ns == extra_ns, "the request to wait")
            clock.advance(extra_ns - 1)
            assert clock.next_deadline_ns == extra_ns  # one nanosecond short: still waiting
            clock.advance(1)
            async with await slow as r:
                assert r.status == 200
            api.degraded = False  # restored: answered with the clock standing still
            async with s.get(f"{api.url}/api/v1/nodes") as r:
                assert r.status == 200
            async with s.get(f"{api.url}/readyz") as r:
                assert (r.status, await r.text()) == (200, "ok")
        assert (healthz, metrics) == (200, 200)
        assert readyz[0] == 500
        assert FAILED_CHECK in readyz[1].splitlines()
        assert clock.now_ns() == extra_ns

    run_with_api(body, config, clock)


def wait_for_readyz(sim: SimProcess, status: int) -> Reply:
    """Poll /readyz (never slowed down) until it answers ``status``."""
    deadline = time.monotonic() + TOGGLE_TIMEOUT_S
    while True:
        reply = call(f"{sim.api_url}/readyz")
        if reply.status == status:
            return reply
        assert time.monotonic() < deadline, f"/readyz stayed {reply.status}: {sim.log_tail()}"
        time.sleep(POLL_S)


def timed_get_nodes(sim: SimProcess) -> float:
    started = time.monotonic()
    reply = call(f"{sim.api_url}/api/v1/nodes")
    elapsed = time.monotonic() - started
    assert reply.status == 200
    assert len(reply.json()["items"]) == 3
    return elapsed


def sim_with(tmp_path: Path, degrade: str) -> SimProcess:
    config = tmp_path / "sim.yaml"
    config.write_text(f"degrade:\n{degrade}")
    return start_sim_process(["--nodes", "3", "--config", str(config)], timeout_s=60)


def test_sigusr1_slows_api_requests_and_fails_readyz_until_the_second_sigusr1(
    tmp_path: Path,
) -> None:
    with sim_with(tmp_path, f"  extra_latency_s: {EXTRA_S}\n") as sim:
        assert call(f"{sim.api_url}/readyz").body == b"ok"
        os.kill(sim.pid, signal.SIGUSR1)
        degraded = wait_for_readyz(sim, 500)
        slow_s = timed_get_nodes(sim)
        healthz = call(f"{sim.api_url}/healthz")
        os.kill(sim.pid, signal.SIGUSR1)
        restored = wait_for_readyz(sim, 200)
        log = sim.log_tail().splitlines()
    assert FAILED_CHECK in degraded.body.decode().splitlines()
    assert slow_s >= EXTRA_S
    assert healthz.status == 200
    assert restored.body == b"ok"
    assert [line.split(": ")[1] for line in log] == ["degraded (SIGUSR1)", "restored (SIGUSR1)"]


def test_degrade_after_s_turns_the_slow_down_on_without_a_signal(tmp_path: Path) -> None:
    with sim_with(tmp_path, f"  extra_latency_s: {EXTRA_S}\n  after_s: 2\n") as sim:
        before = call(f"{sim.api_url}/readyz")
        degraded = wait_for_readyz(sim, 500)
        slow_s = timed_get_nodes(sim)
        log = sim.log_tail()
    assert before.status == 200
    assert FAILED_CHECK in degraded.body.decode().splitlines()
    assert slow_s >= EXTRA_S
    assert "degraded (degrade.after_s=2)" in log


@pytest.mark.parametrize(
    ("degrade", "field"),
    [
        pytest.param({"extra_latency_s": -1}, "degrade.extra_latency_s", id="negative-latency"),
        pytest.param({"after_s": 0}, "degrade.after_s", id="zero-after"),
        pytest.param({"after": 3}, "degrade.after", id="unknown-field"),
    ],
)
def test_bad_degrade_setting_is_a_profile_error_naming_the_field(
    degrade: dict[str, float], field: str
) -> None:
    with pytest.raises(ProfileError, match=field):
        sim_config_from_dict({"degrade": degrade})
