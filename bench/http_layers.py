"""Where the HTTP generator's time goes: the closed loop against nginx, one layer at a time.

Run from the repository root: ``.venv/bin/python -m bench.http_layers``.

nginx (one worker, as ``bench.sidebyside_http`` starts it) is pinned to one core. Each layer then
runs in its own process, pinned to the other core, for ``--duration`` seconds with 64
connections, 64 requests in flight:

- ``bare``: a uvloop ``asyncio.Protocol`` per connection that parses each answer with httptools
  and writes the next request from ``on_message_complete``. This is the floor of the approach.
- ``target``: ``FastHttpTarget`` with a sink that only resubmits. This adds loadlab's slot
  bookkeeping.
- ``recorded``: the same, with the sink also calling ``Recorder.complete``.
- ``loop``: the whole closed loop as ``loadlab run http-throughput`` drives it
  (``ClosedLoopRunner``, the op mix, the dispatch record, the session's ``SwitchableSink``). The
  runner hands the target the recorder's step, so each request is recorded and replaced inside
  the slot's ``on_message_complete``: this layer skips ``submit``, which ``target`` and
  ``recorded`` still go through, and can be the fastest of the three.

The layers run ``--rounds`` times in turn (A B C D A B C D ...), then ``wrk -t1 -c64`` once for
scale. It prints the median rate of each layer and the microseconds each layer adds per request.
Not a test: a measurement of this machine, like the side-by-side scripts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import cast

import httptools
import uvloop

from loadlab.clock import MonotonicClock
from loadlab.engine.mix import OpMix
from loadlab.engine.runner import ClosedLoopRunner
from loadlab.metrics.recorder import Recorder
from loadlab.session import SwitchableSink
from loadlab.targets.base import Outcome
from loadlab.targets.credentials import SimIdentity
from loadlab.targets.fast_http import FastHttpTarget, render_requests
from loadlab.targets.http import HttpOperation

LAYERS = ("bare", "target", "recorded", "loop")
CONNECTIONS = 64
PATH = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node-0"


_counter = {"n": 0, "on": 1}
"""Completions so far, and whether each completion still sends the next request."""


class _Bare(asyncio.Protocol):
    """The floor: parse with httptools, write the next request from ``on_message_complete``."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.WriteTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is not a subclass of asyncio's: cast, do not isinstance.
        self.transport = cast(asyncio.WriteTransport, transport)
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        _counter["n"] += 1
        if _counter["on"] and self.transport is not None:
            self.transport.write(self.request)


class _Resubmit:
    """A sink that sends the next request at once, recording first when given a recorder."""

    def __init__(self, target: FastHttpTarget, recorder: Recorder | None) -> None:
        self.target, self.recorder = target, recorder

    def complete(self, op: int, outcome: Outcome, intended: int, sent: int, done: int) -> None:
        _counter["n"] += 1
        if self.recorder is not None:
            self.recorder.complete(op, outcome, intended, sent, done)
        if _counter["on"]:
            self.target.submit(0, done)


async def _measure(duration_s: float, count: Callable[[], int] = lambda: _counter["n"]) -> float:
    """Completions per second over ``duration_s``, after a second to settle; ``count``: the
    completions so far."""
    await asyncio.sleep(1.0)  # connections made, caches warm
    n0, t0 = count(), time.perf_counter()
    await asyncio.sleep(duration_s)
    rate = (count() - n0) / (time.perf_counter() - t0)
    _counter["on"] = 0
    return rate


async def _layer(layer: str, url: str, duration_s: float) -> float:
    op = HttpOperation("get-lease", "GET", PATH)
    if layer == "bare":
        host, port = url.removeprefix("http://").split(":")
        request = render_requests(url, op, None, SimIdentity())[0]
        loop = asyncio.get_running_loop()
        for _ in range(CONNECTIONS):
            await loop.create_connection(lambda: _Bare(request), host, int(port))
        return await _measure(duration_s)
    clock = MonotonicClock()
    target = FastHttpTarget(url, [op], connections=CONNECTIONS, clock=clock)
    recorder = Recorder("api", ["get-lease"], start_ns=clock.now_ns())
    if layer == "loop":
        sink = SwitchableSink(recorder)
        await target.open(sink)
        end_ns = clock.now_ns() + int((duration_s + 2.0) * 1e9)
        mix = OpMix([1.0], seed=1)
        runner = ClosedLoopRunner(
            clock, target, mix, recorder, concurrency=CONNECTIONS, end_ns=end_ns
        )
        sink.to = runner.sink
        completed = {"n": 0}

        def count() -> int:  # the recorder's completions, one rotation at a time
            completed["n"] += recorder.rotate(clock.now_ns()).completed
            return completed["n"]

        running = asyncio.ensure_future(runner.run())
        rate = await _measure(duration_s, count)
        await running
    else:
        await target.open(_Resubmit(target, recorder if layer == "recorded" else None))
        for _ in range(CONNECTIONS):
            target.submit(0, clock.now_ns())
        rate = await _measure(duration_s)
    await target.close()
    return rate


def _run_layer(layer: str, url: str, duration_s: float) -> float:
    """One layer in a fresh process (on the generator core: children inherit the pinning)."""
    cmd = [sys.executable, "-m", "bench.http_layers", "--layer", layer, "--url", url]
    cmd += ["--duration", str(duration_s)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["rate_per_s"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run (5)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each layer, in turn (3)")
    parser.add_argument("--layer", choices=LAYERS, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.layer is not None:
        rate = uvloop.run(_layer(args.layer, args.url, args.duration))
        print(json.dumps({"layer": args.layer, "rate_per_s": rate}))
        return 0

    from bench.sidebyside import pin_server_tree, stop_process_group
    from bench.sidebyside_http import run_wrk, serving_pid, start_nginx

    with tempfile.TemporaryDirectory(prefix="loadlab-http-layers-") as tmp:
        proc, url = start_nginx(Path(tmp))
        try:
            pinning = pin_server_tree(proc.pid, True, server="nginx", generators="the layers")
            print(pinning.description, flush=True)
            rates: dict[str, list[float]] = {layer: [] for layer in LAYERS}
            for _ in range(args.rounds):
                for layer in LAYERS:
                    rates[layer].append(_run_layer(layer, url, args.duration))
            wrk = run_wrk(url + PATH, args.duration, CONNECTIONS, serving_pid(proc.pid))
        finally:
            stop_process_group(proc)
    medians = {layer: statistics.median(values) for layer, values in rates.items()}
    print(f"{'layer':<10} {'req/s':>10} {'us/request':>11} {'adds us':>8}")
    previous = None
    for layer in LAYERS:
        us = 1e6 / medians[layer]
        adds = "" if previous is None else f"{us - previous:8.2f}"
        print(f"{layer:<10} {medians[layer]:>10,.0f} {us:>11.2f} {adds:>8}")
        previous = us
    print(f"{'wrk':<10} {wrk.rate_per_s:>10,.0f} {1e6 / wrk.rate_per_s:>11.2f}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
