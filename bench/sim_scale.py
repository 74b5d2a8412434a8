"""The embedded control plane at scale: start-up time, peak memory, and a few real requests.

Run from the repository root: ``.venv/bin/python bench/sim_scale.py`` (5,000 nodes x 30 pods,
the scale target in docs/control-plane-model.md: ready in under 30 s, under 2 GiB), or
``--nodes 500 --pods-per-node 10`` for a quick look; ``--json`` prints the figures as one JSON
object instead of a table.

The sim runs as the same subprocess ``loadlab run`` starts (``python -m loadlab.sim ...
--ready-json``). A thread samples its RSS with psutil every ``--sample-ms`` from launch to stop,
so the peaks include seeding and the full LIST. Once it is ready: a cluster-wide pod LIST paged
with limit=500 and continue (a consistent read: the etcd path, as kubectl and a paging client
do), node-filtered pod LISTs from the watch cache (resourceVersion=0, as an informer does) and
as a consistent read, GETs of a node lease, DNS A queries for kubernetes.default.svc.cluster.local
(dnspython, UDP), then one unpaged cluster-wide pod LIST from the watch cache, which encodes
every pod once and so fills the sim's per-object JSON cache: the RSS after it is the steady state.

Every request is anonymous, so the sim's overload model puts it in the global-default priority
level and charges its modelled service time (awaited, not computed); latencies are that model
plus the sim's real work, measured from this process over loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import select
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import aiohttp
import dns.message
import dns.query
import dns.rdatatype
import psutil

MIB = 1024 * 1024
READY_LIMIT_S = 30.0  # docs/control-plane-model.md: 5,000 x 30 pods ready in < 30 s ...
RSS_LIMIT_MIB = 2048.0  # ... and stays under 2 GiB
START_TIMEOUT_S = 180.0
"""Give up on start-up after this long: three times the 30 s target on a busy 2-core box."""
STOP_GRACE_S = 10.0
REQUEST_TIMEOUT_S = 120.0
"""Per request: a consistent node-filtered LIST of 150k pods is modelled at ~15 s (etcd path)."""
PAGE_LIMIT = 500
MAX_PAGES = 10_000
"""Bound on the paging loop: 500 x 10,000 = 5M pods, far above the 110-pods-per-node cap."""
REPEATS = 20
"""GETs and DNS queries per kind; the table shows their median and max."""
KUBERNETES_SERVICE_IP = "192.0.2.1"  # loadlab.sim.k8s.objects: the kubernetes Service's ClusterIP
LEASE_PATH = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{node}"
PODS_PATH = "/api/v1/pods"


@dataclass(frozen=True)
class Timing:
    """Wall-clock latency of one kind of request, in ms (several samples: median and max)."""

    name: str
    count: int
    median_ms: float
    max_ms: float
    detail: str
    """What came back (items, pages, answer)."""


@dataclass(frozen=True)
class ScaleResult:
    """One benchmark run."""

    nodes: int
    pods_per_node: int
    ready_s: float
    """Launch to the sim's ready line (seeding, API and DNS listening)."""
    rss_at_ready_mib: float
    peak_rss_mib: float
    """Highest sampled RSS of the sim process from launch to stop."""
    rss_after_full_list_mib: float
    """RSS right after the unpaged cluster-wide LIST (JSON of every pod cached)."""
    requests: tuple[Timing, ...]
    rss_samples: int
    cpu_count: int

    @property
    def meets_issue_target(self) -> bool:
        """Ready in < 30 s and peak RSS < 2 GiB (docs/control-plane-model.md)."""
        return self.ready_s < READY_LIMIT_S and self.peak_rss_mib < RSS_LIMIT_MIB


class RssSampler:
    """A daemon thread sampling one process's RSS until ``stop()``; keeps the peak."""

    def __init__(self, pid: int, interval_s: float) -> None:
        self._proc = psutil.Process(pid)
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._peak = 0
        self._last = 0
        self.samples = 0
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                rss = int(self._proc.memory_info().rss)
            except psutil.Error:  # the process has ended
                return
            with self._lock:
                self._last = rss
                self._peak = max(self._peak, rss)
                self.samples += 1
            self._stop.wait(self._interval_s)

    def sample_now(self) -> int:
        """One extra sample, taken now (bytes)."""
        rss = int(self._proc.memory_info().rss)
        with self._lock:
            self._last = rss
            self._peak = max(self._peak, rss)
            self.samples += 1
        return rss

    @property
    def peak_bytes(self) -> int:
        with self._lock:
            return self._peak

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)


def launch_sim(nodes: int, pods_per_node: int) -> subprocess.Popen[bytes]:
    argv = [
        sys.executable,
        "-m",
        "loadlab.sim",
        "--nodes",
        str(nodes),
        "--pods-per-node",
        str(pods_per_node),
        "--api-port",
        "0",
        "--dns-port",
        "0",
        "--ready-json",
    ]
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)


def wait_ready(proc: subprocess.Popen[bytes], timeout_s: float) -> tuple[str, str]:
    """(api_url, dns host:port) from the sim's ready line; raises if it ends or times out."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout_s
    buf = b""
    while b"\n" not in buf:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RuntimeError(f"the sim was not ready after {timeout_s:.0f} s")
        readable, _, _ = select.select([fd], [], [], remaining)
        if readable:
            chunk = os.read(fd, 4096)
            if not chunk:
                raise RuntimeError(f"the sim exited during start-up (code {proc.wait()})")
            buf += chunk
    ready = json.loads(buf.split(b"\n", 1)[0])
    return str(ready["api"]), str(ready.get("dns") or "")


def stop_sim(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after STOP_GRACE_S."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_GRACE_S)
    if proc.stdout is not None:
        proc.stdout.close()


def _timing(name: str, samples_s: Sequence[float], detail: str) -> Timing:
    ms = [s * 1000.0 for s in samples_s]
    return Timing(name, len(ms), statistics.median(ms), max(ms), detail)


async def _get_json(session: aiohttp.ClientSession, url: str) -> tuple[float, dict[str, object]]:
    t0 = time.perf_counter()
    async with session.get(url) as resp:
        body = await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"GET {url}: HTTP {resp.status}: {body[:200]!r}")
    elapsed_s = time.perf_counter() - t0
    data = json.loads(body)
    if not isinstance(data, dict):
        raise RuntimeError(f"GET {url}: not a JSON object")
    return elapsed_s, data


def _items(data: dict[str, object]) -> int:
    items = data.get("items")
    return len(items) if isinstance(items, list) else 0


def _continue_token(data: dict[str, object]) -> str:
    meta = data.get("metadata")
    token = meta.get("continue") if isinstance(meta, dict) else None
    return str(token) if token else ""


async def paged_pod_list(session: aiohttp.ClientSession, api: str) -> list[Timing]:
    """Cluster-wide pod LIST, limit=500, following continue to the end."""
    page_s: list[float] = []
    items = 0
    token = ""
    t0 = time.perf_counter()
    for _ in range(MAX_PAGES):
        url = f"{api}{PODS_PATH}?limit={PAGE_LIMIT}"
        if token:
            url += f"&continue={token}"
        elapsed_s, data = await _get_json(session, url)
        page_s.append(elapsed_s)
        items += _items(data)
        token = _continue_token(data)
        if not token:
            break
    total_s = time.perf_counter() - t0
    return [
        _timing("pod LIST page (limit=500)", page_s, f"{len(page_s)} pages"),
        _timing("pod LIST all pages", [total_s], f"{items} pods"),
    ]


async def http_requests(api: str, node: str) -> tuple[list[Timing], Timing]:
    """The API requests before and the full cluster-wide LIST (returned separately)."""
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        timings = await paged_pod_list(session, api)
        selector = f"fieldSelector=spec.nodeName%3D{node}"
        for label, query in (
            ("node-filtered pod LIST, cache", f"{selector}&resourceVersion=0"),
            ("node-filtered pod LIST, etcd", selector),
        ):
            samples: list[float] = []
            n = 0
            for _ in range(3 if query == selector else REPEATS):
                elapsed_s, data = await _get_json(session, f"{api}{PODS_PATH}?{query}")
                samples.append(elapsed_s)
                n = _items(data)
            timings.append(_timing(label, samples, f"{n} pods"))
        lease_url = api + LEASE_PATH.format(node=node)
        samples = [(await _get_json(session, lease_url))[0] for _ in range(REPEATS)]
        timings.append(_timing("GET lease (consistent)", samples, node))
        elapsed_s, data = await _get_json(session, f"{api}{PODS_PATH}?resourceVersion=0")
        full = _timing("pod LIST, unpaged, cache", [elapsed_s], f"{_items(data)} pods")
    return timings, full


def dns_queries(dns_addr: str) -> Timing:
    host, _, port = dns_addr.rpartition(":")
    query = dns.message.make_query("kubernetes.default.svc.cluster.local", dns.rdatatype.A)
    samples: list[float] = []
    answer = ""
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        reply = dns.query.udp(query, host, port=int(port), timeout=5.0)
        samples.append(time.perf_counter() - t0)
        answer = ",".join(rr.to_text() for rrset in reply.answer for rr in rrset)
    if answer != KUBERNETES_SERVICE_IP:
        raise RuntimeError(f"DNS answered {answer!r}, expected {KUBERNETES_SERVICE_IP}")
    return _timing("DNS A kubernetes.default", samples, answer)


def run(nodes: int, pods_per_node: int, sample_s: float) -> ScaleResult:
    t0 = time.perf_counter()
    proc = launch_sim(nodes, pods_per_node)
    sampler = RssSampler(proc.pid, sample_s)
    sampler.start()
    try:
        api, dns_addr = wait_ready(proc, START_TIMEOUT_S)
        ready_s = time.perf_counter() - t0
        rss_at_ready = sampler.sample_now()
        node = f"node-{nodes // 2}"
        timings, full = asyncio.run(http_requests(api, node))
        rss_after_full = sampler.sample_now()
        if dns_addr:
            timings.append(dns_queries(dns_addr))
        timings.append(full)
        sampler.sample_now()
    finally:
        sampler.stop()
        stop_sim(proc)
    return ScaleResult(
        nodes=nodes,
        pods_per_node=pods_per_node,
        ready_s=ready_s,
        rss_at_ready_mib=rss_at_ready / MIB,
        peak_rss_mib=sampler.peak_bytes / MIB,
        rss_after_full_list_mib=rss_after_full / MIB,
        requests=tuple(timings),
        rss_samples=sampler.samples,
        cpu_count=len(os.sched_getaffinity(0)),
    )


def render(result: ScaleResult) -> str:
    verdict = "meets" if result.meets_issue_target else "MISSES"
    lines = [
        f"sim {result.nodes:,} nodes x {result.pods_per_node} pods "
        f"({result.nodes * result.pods_per_node:,} pods), {result.cpu_count} usable cores",
        f"  ready in        {result.ready_s:8.2f} s   (target < {READY_LIMIT_S:.0f} s)",
        f"  RSS at ready    {result.rss_at_ready_mib:8.0f} MiB",
        f"  RSS after LIST  {result.rss_after_full_list_mib:8.0f} MiB (JSON cache of every pod)",
        f"  peak RSS        {result.peak_rss_mib:8.0f} MiB (target < {RSS_LIMIT_MIB:.0f} MiB, "
        f"{result.rss_samples} samples)",
        f"  scale target:   {verdict}",
        "",
        f"{'request':<32} {'n':>3} {'median ms':>10} {'max ms':>10}  detail",
    ]
    for t in result.requests:
        lines.append(
            f"{t.name:<32} {t.count:>3} {t.median_ms:>10.1f} {t.max_ms:>10.1f}  {t.detail}"
        )
    lines.append("(anonymous requests: global-default level; service time is the sim's model)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--pods-per-node", type=int, default=30)
    parser.add_argument("--sample-ms", type=float, default=50.0, help="RSS sampling period")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    result = run(args.nodes, args.pods_per_node, args.sample_ms / 1000.0)
    if args.json:
        print(json.dumps({**asdict(result), "meets_issue_target": result.meets_issue_target}))
    else:
        print(render(result))
    return 0 if result.meets_issue_target else 1


if __name__ == "__main__":
    sys.exit(main())
