"""Fixtures that run the sim on loopback for tests.

- ``sim_config(**overrides)``: a small SimConfig (5 nodes x 3 pods, ports 0, cheap costs).
- ``run_with_api(body, config=None, clock=None)``: ``asyncio.run`` a test body that receives a
  started ``SimApiServer`` (same event loop, so the body may poke ``api.model`` / ``api.store``).
- ``sim_thread``: the whole sim (API + DNS, via ``server.serve``) in a background thread with
  its own event loop; yields ``SimEndpoints`` (api_url, dns_addr). ``sim_thread_factory(config)``
  starts one with a config of your own.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from loadlab.clock import Clock, MonotonicClock
from loadlab.sim.apiserver.app import SimApiServer
from loadlab.sim.config import SimConfig, sim_config_from_dict
from loadlab.sim.server import SimEndpoints, seeded_store, serve

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0

SimConfigFactory = Callable[..., SimConfig]
ApiBody = Callable[[SimApiServer], Awaitable[None]]
RunWithApi = Callable[..., None]


def small_sim_config(**overrides: Any) -> SimConfig:
    """5 nodes x 3 pods, 4 services, ports 0 (any free port), on 127.0.0.1."""
    data: dict[str, Any] = {
        "nodes": 5,
        "pods_per_node": 3,
        "services": 4,
        "api_port": 0,
        "dns_port": 0,
        "host": "127.0.0.1",
        "api": {"seed": 1},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return sim_config_from_dict(data, source="test")


@pytest.fixture
def sim_config() -> SimConfigFactory:
    return small_sim_config


async def _run_api(body: ApiBody, config: SimConfig, clock: Clock) -> None:
    api = SimApiServer(config, seeded_store(config), clock=clock)
    await api.start()
    try:
        await asyncio.wait_for(body(api), timeout=60)
    finally:
        await api.stop()


@pytest.fixture
def run_with_api() -> RunWithApi:
    def run(body: ApiBody, config: SimConfig | None = None, clock: Clock | None = None) -> None:
        cfg = config if config is not None else small_sim_config()
        asyncio.run(_run_api(body, cfg, clock if clock is not None else MonotonicClock()))

    return run


@contextlib.contextmanager
def sim_in_thread(config: SimConfig) -> Iterator[SimEndpoints]:
    """Run ``serve(config)`` in a daemon thread; yield its endpoints; cancel and join on exit."""
    ready = threading.Event()
    endpoints: list[SimEndpoints] = []
    failure: list[BaseException] = []
    loop = asyncio.new_event_loop()
    main: list[asyncio.Task[None]] = []

    def on_ready(ep: SimEndpoints) -> None:
        endpoints.append(ep)
        ready.set()

    def thread_main() -> None:
        asyncio.set_event_loop(loop)
        task = loop.create_task(serve(config, ready=on_ready))
        main.append(task)
        try:
            loop.run_until_complete(task)
        except asyncio.CancelledError:
            pass
        except BaseException as exc:
            failure.append(exc)
        finally:
            ready.set()
            loop.close()

    thread = threading.Thread(target=thread_main, name="sim", daemon=True)
    thread.start()
    try:
        if not ready.wait(START_TIMEOUT_S) or not endpoints:
            raise RuntimeError(f"the sim did not start: {failure}")
        yield endpoints[0]
    finally:
        if main and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(main[0].cancel)
        thread.join(STOP_TIMEOUT_S)


@pytest.fixture
def sim_thread_factory() -> Callable[[SimConfig], contextlib.AbstractContextManager[SimEndpoints]]:
    return sim_in_thread


@pytest.fixture
def sim_thread() -> Iterator[SimEndpoints]:
    with sim_in_thread(small_sim_config()) as endpoints:
        yield endpoints
