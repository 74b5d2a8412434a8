"""The cluster DNS's Prometheus metrics, named and labelled as CoreDNS 1.11's metrics and cache
plugins name them (``plugin/metrics/vars/vars.go``, ``plugin/cache/metrics.go``), and the small
HTTP endpoint that serves them (CoreDNS: ``prometheus :9153``).

What is faithful: names, label names, the request-duration buckets (``plugin.TimeBuckets``:
0.25 ms doubling 16 times), the ``type`` label's list of monitored types (others are "other"),
``zone`` "." (the kubeadm Corefile has one server block, ``.:53``), ``view`` "" (no view plugin),
and what is *not* counted: packets miekg/dns rejects before CoreDNS sees them (FORMERR, NOTIMP)
and BADVERS answers (``core/dnsserver/server.go`` returns those before the plugin chain).

Simplifications, on purpose: the sim has no separate cache plugin; its cache of encoded answers
plays that part, so ``coredns_cache_hits_total`` counts answers served from it, typed "success"
or "denial" (NXDOMAIN / NODATA) as CoreDNS types them.
"""

from __future__ import annotations

import dns.rdatatype
from aiohttp import web

from loadlab.sim.promtext import CONTENT_TYPE, METRICS_PATH, PromRegistry

# CoreDNS plugin.TimeBuckets: prometheus.ExponentialBuckets(0.00025, 2, 16).
TIME_BUCKETS_S = tuple(0.00025 * 2**i for i in range(16))
# CoreDNS request/response size buckets, in bytes (plugin/metrics/vars/vars.go).
SIZE_BUCKETS_BYTES = (0, 100, 200, 300, 400, 511, 1023, 2047, 4095, 8291, 16e3, 32e3, 48e3, 64e3)
# plugin/metrics/vars/monitor.go: types with their own label value; the rest are "other".
MONITORED_TYPES = frozenset(
    dns.rdatatype.from_text(t)
    for t in (
        "AAAA", "A", "CNAME", "DNSKEY", "DS", "MX", "NSEC3", "NSEC", "NS", "PTR", "RRSIG", "SOA",
        "SRV", "TXT", "HTTPS", "IXFR", "AXFR", "ANY",
    )
)  # fmt: skip
ZONE = "."
VIEW = ""


def qtype_label(rdtype: int) -> str:
    """CoreDNS ``qTypeString``."""
    return (
        dns.rdatatype.to_text(dns.rdatatype.RdataType(rdtype))
        if rdtype in MONITORED_TYPES
        else "other"
    )


class DnsMetrics:
    """The counters one cluster DNS server keeps; ``server`` is its CoreDNS-style address."""

    def __init__(self, server: str = "dns://:53") -> None:
        self.server = server
        self.registry = registry = PromRegistry()
        self._requests = registry.counter(
            "coredns_dns_requests_total",
            "Counter of DNS requests made per zone, protocol and family.",
            ("server", "zone", "view", "proto", "family", "type"),
        )
        self._duration = registry.histogram(
            "coredns_dns_request_duration_seconds",
            "Histogram of the time (in seconds) each request took per zone.",
            ("server", "zone", "view"),
            TIME_BUCKETS_S,
        )
        self._request_size = registry.histogram(
            "coredns_dns_request_size_bytes",
            "Size of the EDNS0 UDP buffer in bytes (64K for TCP) per zone and protocol.",
            ("server", "zone", "view", "proto"),
            SIZE_BUCKETS_BYTES,
        )
        self._response_size = registry.histogram(
            "coredns_dns_response_size_bytes",
            "Size of the returned response in bytes.",
            ("server", "zone", "view", "proto"),
            SIZE_BUCKETS_BYTES,
        )
        self._responses = registry.counter(
            "coredns_dns_responses_total",
            "Counter of response status codes.",
            ("server", "zone", "view", "rcode", "plugin"),
        )
        self._cache_requests = registry.counter(
            "coredns_cache_requests_total",
            "The count of cache requests.",
            ("server", "zones", "view"),
        )
        self._cache_hits = registry.counter(
            "coredns_cache_hits_total",
            "The count of cache hits.",
            ("server", "type", "zones", "view"),
        )
        self._cache_misses = registry.counter(
            "coredns_cache_misses_total",
            "The count of cache misses. Deprecated, derive misses from cache hits/requests "
            "counters.",
            ("server", "zones", "view"),
        )

    def report(
        self,
        *,
        proto: str,
        family: str,
        qtype: int,
        rcode: str,
        plugin: str,
        duration_s: float,
        request_size: int,
        response_size: int,
    ) -> None:
        """One answered request (CoreDNS ``vars.Report``)."""
        server = self.server
        self._requests.inc(server, ZONE, VIEW, proto, family, qtype_label(qtype))
        self._duration.observe(duration_s, server, ZONE, VIEW)
        self._request_size.observe(request_size, server, ZONE, VIEW, proto)
        self._response_size.observe(response_size, server, ZONE, VIEW, proto)
        self._responses.inc(server, ZONE, VIEW, rcode, plugin)

    def cache_lookup(self, *, hit: bool, denial: bool) -> None:
        self._cache_requests.inc(self.server, ZONE, VIEW)
        if hit:
            kind = "denial" if denial else "success"
            self._cache_hits.inc(self.server, kind, ZONE, VIEW)
        else:
            self._cache_misses.inc(self.server, ZONE, VIEW)

    def render(self) -> str:
        return self.registry.render()


class MetricsEndpoint:
    """``GET /metrics`` over HTTP for one ``DnsMetrics`` (the sim listens on loopback)."""

    def __init__(self, metrics: DnsMetrics) -> None:
        self._metrics = metrics
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self, host: str, port: int) -> None:
        app = web.Application()
        app.router.add_get(METRICS_PATH, self._serve)
        self._runner = runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self.port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _serve(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self._metrics.render().encode(), headers={"Content-Type": CONTENT_TYPE}
        )
