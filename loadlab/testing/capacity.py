"""An HTTP server of known capacity: N slots held for a fixed service time, 429 beyond a queue.

Its capacity is ``slots / service_s`` requests per second by construction: the yardstick for the
knee finder, and for wrk on the same server. Service time is awaited, not burned, so the
server's own CPU stays far below the limit it models.

Run: ``python -m loadlab.testing.capacity --slots 50 --service-ms 25 --queue 100``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from dataclasses import dataclass

from aiohttp import web

from loadlab import runloop


@dataclass(frozen=True)
class Capacity:
    slots: int
    service_s: float
    queue_limit: int

    @property
    def requests_per_s(self) -> float:
        return self.slots / self.service_s


def make_app(cap: Capacity) -> web.Application:
    slots = asyncio.Semaphore(cap.slots)
    waiting = 0
    ok_body = b'{"kind":"Status","status":"Success"}'
    busy_body = b'{"kind":"Status","status":"Failure","reason":"TooManyRequests","code":429}'

    async def handle(request: web.Request) -> web.Response:
        nonlocal waiting
        await request.read()
        if slots.locked() and waiting >= cap.queue_limit:
            return web.Response(
                status=429,
                body=busy_body,
                headers={"Retry-After": "1"},
                content_type="application/json",
            )
        waiting += 1
        try:
            await slots.acquire()
        finally:
            waiting -= 1
        try:
            await asyncio.sleep(cap.service_s)
        finally:
            slots.release()
        return web.Response(body=ok_body, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


async def serve(cap: Capacity, host: str, port: int, ready_json: bool) -> None:
    runner = web.AppRunner(make_app(cap), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=4096)
    await site.start()
    server = site._server
    assert server is not None
    bound = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    url = f"http://{host}:{bound}"
    if ready_json:
        print(json.dumps({"api": url, "capacity_per_s": cap.requests_per_s}), flush=True)
    else:
        line = f"capacity server on {url}: {cap.requests_per_s:.0f} req/s"
        print(line, file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadlab.testing.capacity", description=__doc__)
    parser.add_argument("--slots", type=int, default=50)
    parser.add_argument("--service-ms", type=float, default=25.0)
    parser.add_argument("--queue", type=int, default=100, help="requests waiting beyond the slots")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ready-json", action="store_true", help="print one JSON line when ready")
    args = parser.parse_args(argv)
    if not args.host.startswith("127.") and args.host != "::1":
        parser.error("the capacity server listens on loopback only")
    cap = Capacity(args.slots, args.service_ms / 1000.0, args.queue)
    runloop.run(serve(cap, args.host, args.port, args.ready_json))
    return 0


if __name__ == "__main__":
    sys.exit(main())
