"""The sim's cluster DNS: a CoreDNS-like server on UDP and TCP, fed by a watch of the sim's API.

Like CoreDNS's kubernetes plugin it answers the cluster zone from an informer cache of Services and
EndpointSlices (docs/control-plane-model.md): at start it waits up to ``sync_wait_s`` for the
first sync, then serves, answering SERVFAIL for zone names until synced; once synced it keeps
answering from its cache while the watch is broken (stale). An optional restart policy models a
liveness probe that fails once the API has been unreachable for ``restart_after_api_down_s``: the
server drops its records, answers nothing for ``restart_s``, and comes back unsynced — the
coupling from API saturation to DNS failure that the incident showed.

What CoreDNS's server layer does around the plugin (screening, FORMERR / NOTIMP / BADVERS,
truncation to whole records) is in ``wire.py``; its metrics in ``metrics.py``. TCP connections
close after CoreDNS's read timeout (first query) and idle timeout (between queries).

Encoded answers are cached per query bytes (minus the ID) and per table version, so a repeated
question costs a dict lookup and one ``sendto``: the server's own CPU should not be the knee.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import ipaddress
import random
import ssl
from collections.abc import Awaitable
from typing import Any, cast

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
from pydantic import BaseModel, ConfigDict, Field, field_validator

from loadlab.clock import NS_PER_S, Clock
from loadlab.sim.dns import wire
from loadlab.sim.dns.informer import ApiSource, HttpApiSource, Informer
from loadlab.sim.dns.metrics import DnsMetrics
from loadlab.sim.dns.records import RecordTable
from loadlab.sim.k8s.objects import COREDNS_SERVICE_ACCOUNT, JsonObj

DEFAULT_TOKEN = COREDNS_SERVICE_ACCOUNT  # a sim without tokens takes the token as the user name
SERVICES_PATH = "/api/v1/services"
ENDPOINT_SLICES_PATH = "/apis/discovery.k8s.io/v1/endpointslices"

ANSWER_CACHE_ENTRIES = 10_000  # bound on cached encodings; a load test asks few distinct names
TC_BIT = 0x02  # in the third header byte (RFC 1035 4.1.1)
# Not from a reference: with port 0 the kernel picks a free UDP port that may be taken on TCP;
# this many tries makes a clash on every one practically impossible.
PORT_ATTEMPTS = 20


class ClusterDnsConfig(BaseModel):
    """How the cluster DNS behaves. Defaults are cited from docs/control-plane-model.md."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    zone: str = "cluster.local"
    ttl_s: int = Field(default=30, ge=0)  # kubeadm's Corefile: `kubernetes ... ttl 30`
    negative_ttl_s: int = Field(default=5, ge=0)  # CoreDNS ttl default 5 s; NodeLocal denials 5 s
    sync_wait_s: float = Field(default=5.0, ge=0)  # CoreDNS waits up to 5 s for the first sync
    upstream: str | None = None
    """host:port on loopback to forward names outside the zone to; None answers them NXDOMAIN."""
    forward_timeout_s: float = Field(default=2.0, gt=0)  # CoreDNS forward plugin: 2 s read timeout
    restart_after_api_down_s: float | None = Field(default=None, gt=0)
    """Liveness fails after this long without the API -> simulated restart. None: never."""
    # Not in the reference: kubelet's first crash-loop back-off (10 s) as the default downtime.
    restart_s: float = Field(default=10.0, ge=0)
    # CoreDNS 1.11 core/dnsserver/server.go: readTimeout 3 s for a connection's first query,
    # idleTimeout 10 s between the next ones (miekg/dns serveTCPConn); then it closes.
    tcp_read_timeout_s: float = Field(default=3.0, gt=0)
    tcp_idle_timeout_s: float = Field(default=10.0, gt=0)
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    """Port of the coredns_* metrics endpoint (CoreDNS: 9153), 0 = any; None: not served."""

    @field_validator("upstream")
    @classmethod
    def _upstream_on_loopback(cls, value: str | None) -> str | None:
        if value is None:
            return None
        host, _, port = value.rpartition(":")
        host = host.strip("[]")
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("upstream must be host:port on loopback, e.g. 127.0.0.1:5353")
        return value


async def _first_of(*aws: Awaitable[Any]) -> None:
    """Wait until the first of ``aws`` finishes; cancel the others."""
    futures = {asyncio.ensure_future(aw) for aw in aws}
    try:
        await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for future in futures:
            future.cancel()
        for future in futures:
            with contextlib.suppress(asyncio.CancelledError):
                await future


class ServingPhase(enum.Enum):
    """Where the server is in its life. Only SERVING answers anything."""

    STARTING = "starting"  # waiting up to sync_wait_s for the first sync
    SERVING = "serving"
    RESTARTING = "restarting"  # the liveness probe killed it; down for restart_s


class _Feed:
    """Routes one informer's objects into the record table."""

    def __init__(self, table: RecordTable, *, services: bool) -> None:
        self._table = table
        self._services = services

    def on_replace(self, items: Any) -> None:
        if self._services:
            self._table.replace_services(items)
        else:
            self._table.replace_endpoint_slices(items)

    def on_event(self, event_type: str, obj: JsonObj) -> None:
        table = self._table
        if event_type == "DELETED":
            (table.delete_service if self._services else table.delete_endpoint_slice)(obj)
        else:
            (table.upsert_service if self._services else table.upsert_endpoint_slice)(obj)


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: ClusterDns) -> None:
        self._server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not an isinstance check: CPython 3.11's selector datagram transport does not subclass it.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self._server._on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors about clients that went away: nothing to do


class ClusterDns:
    """Authoritative DNS for the cluster zone, answering from an informer cache of the API."""

    def __init__(
        self,
        config: ClusterDnsConfig,
        *,
        api_url: str,
        clock: Clock,
        api_source: ApiSource | None = None,
        api_token: str = DEFAULT_TOKEN,
        api_ssl: ssl.SSLContext | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._config = config
        self._clock = clock
        self._rng = rng or random.Random()
        self._own_source: HttpApiSource | None = None
        if api_source is None:
            api_source = self._own_source = HttpApiSource(
                api_url, token=api_token, clock=clock, ssl_context=api_ssl
            )
        self._source = api_source
        self._table = RecordTable(
            config.zone, ttl_s=config.ttl_s, negative_ttl_s=config.negative_ttl_s
        )
        self._upstream: tuple[str, int] | None = None
        if config.upstream is not None:
            host, _, port = config.upstream.rpartition(":")
            self._upstream = (host.strip("[]"), int(port))
        self._phase = ServingPhase.STARTING
        self._informers: list[Informer] = []
        self._informer_tasks: list[asyncio.Task[None]] = []
        self._lifecycle_task: asyncio.Task[None] | None = None
        self._serving = asyncio.Event()
        self._health_changed = asyncio.Event()
        self._udp: _UdpProtocol | None = None
        self._tcp_server: asyncio.Server | None = None
        self._tcp_writers: set[asyncio.StreamWriter] = set()
        self._forwards: set[asyncio.Task[None]] = set()
        self._port = 0
        # Encoded answers: (tcp?, query minus ID) -> (answer minus ID, rcode, truncated?, qtype).
        self._answers: dict[tuple[bool, bytes], tuple[bytes, int, bool, int]] = {}
        self.metrics = DnsMetrics()
        self._answers_state: tuple[int, bool] = (-1, False)
        # Answers by rcode: 4 bits in the header (RFC 1035 4.1.1), 12 with EDNS (RFC 6891 6.1.3),
        # so a Counter rather than a list: an upstream may answer BADVERS (16) or more.
        self._rcodes: collections.Counter[int] = collections.Counter()
        self.restarts = 0
        self.dropped_unavailable = 0
        self.dropped_malformed = 0
        self.truncated = 0
        self.forwarded = 0
        self.forward_errors = 0

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Bind UDP and TCP on the same port, then wait up to ``sync_wait_s`` for the first sync."""
        loop = asyncio.get_running_loop()
        for _ in range(PORT_ATTEMPTS):  # port 0: the UDP port may be taken on TCP; try another
            transport, protocol = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=(host, port)
            )
            bound = int(transport.get_extra_info("sockname")[1])
            try:
                self._tcp_server = await asyncio.start_server(self._on_tcp_client, host, bound)
            except OSError:
                transport.close()
                if port != 0:
                    raise
                continue
            self._udp, self._port = protocol, bound
            self.metrics.server = f"dns://:{bound}"
            break
        else:
            raise OSError(f"no port free for both UDP and TCP on {host}")
        lifecycle = self._lifecycle_task = asyncio.create_task(self._lifecycle())
        try:
            await _first_of(self._serving.wait(), asyncio.shield(lifecycle))
            if lifecycle.done():
                lifecycle.result()  # it failed before serving: raise why
        except BaseException:
            await self.stop()
            raise

    @property
    def port(self) -> int:
        """The UDP and TCP port (known after ``start``)."""
        return self._port

    @property
    def phase(self) -> ServingPhase:
        return self._phase

    @property
    def synced(self) -> bool:
        """Both informers have delivered their first LIST since the last (re)start."""
        return bool(self._informers) and all(i.synced for i in self._informers)

    async def stop(self) -> None:
        """Close sockets and stop watching."""
        tasks = [t for t in (self._lifecycle_task, *self._forwards) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._stop_informers()
        if self._udp is not None and self._udp.transport is not None:
            self._udp.transport.close()
        if self._tcp_server is not None:
            self._tcp_server.close()
        self._close_tcp_clients()
        if self._tcp_server is not None:
            await self._tcp_server.wait_closed()
        if self._own_source is not None:
            await self._own_source.close()

    async def _lifecycle(self) -> None:
        while True:
            self._phase = ServingPhase.STARTING
            self._start_informers()
            await self._wait_first_sync()
            self._phase = ServingPhase.SERVING
            self._serving.set()
            await self._until_liveness_fails()
            self.restarts += 1
            self._phase = ServingPhase.RESTARTING
            await self._stop_informers()
            self._table.clear()
            self._close_tcp_clients()  # the process died: its connections went with it
            restart_ns = int(self._config.restart_s * NS_PER_S)
            await self._clock.sleep_until(self._clock.now_ns() + restart_ns)

    def _start_informers(self) -> None:
        feeds = ((SERVICES_PATH, True), (ENDPOINT_SLICES_PATH, False))
        self._informers = [
            Informer(
                self._source,
                path,
                _Feed(self._table, services=services),
                clock=self._clock,
                rng=self._rng,
                on_health_change=self._health_changed.set,
            )
            for path, services in feeds
        ]
        self._informer_tasks = [asyncio.create_task(i.run()) for i in self._informers]

    async def _stop_informers(self) -> None:
        for task in self._informer_tasks:
            task.cancel()
        for task in self._informer_tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._informer_tasks = []

    async def _wait_first_sync(self) -> None:
        deadline_ns = self._clock.now_ns() + int(self._config.sync_wait_s * NS_PER_S)
        synced = asyncio.gather(*(i.wait_synced() for i in self._informers))
        await _first_of(synced, self._clock.sleep_until(deadline_ns))

    def api_down_since_ns(self) -> int | None:
        """Since when the API has been unreachable (the earliest broken watch), or None."""
        broken = [i.broken_since_ns for i in self._informers if i.broken_since_ns is not None]
        return min(broken) if broken else None

    async def _until_liveness_fails(self) -> None:
        after_s = self._config.restart_after_api_down_s
        if after_s is None:
            await asyncio.Event().wait()  # never: cancelled by stop()
            return
        after_ns = int(after_s * NS_PER_S)
        while True:
            self._health_changed.clear()
            since_ns = self.api_down_since_ns()
            if since_ns is not None and self._clock.now_ns() - since_ns >= after_ns:
                return
            if since_ns is None:
                await self._health_changed.wait()
            else:
                deadline = self._clock.sleep_until(since_ns + after_ns)
                await _first_of(self._health_changed.wait(), deadline)

    # -- answering -----------------------------------------------------------------------------

    async def resolve(self, query: bytes, *, tcp: bool = False, family: str = "1") -> bytes | None:
        """The wire answer to one wire query, or None when the server would stay silent."""
        result = self._respond(query, tcp, family=family)
        if isinstance(result, dns.message.Message):
            return await self._forward(result, tcp)
        return result

    def _on_datagram(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        result = self._respond(data, False, family="2" if ":" in str(addr[0]) else "1")
        if isinstance(result, dns.message.Message):
            task = asyncio.create_task(self._forward_udp(result, addr))
            self._forwards.add(task)
            task.add_done_callback(self._forwards.discard)
        elif result is not None and self._udp is not None and self._udp.transport is not None:
            self._udp.transport.sendto(result, addr)

    async def _forward_udp(self, query: dns.message.Message, addr: tuple[str | Any, int]) -> None:
        reply = await self._forward(query, False)
        if reply is not None and self._udp is not None and self._udp.transport is not None:
            self._udp.transport.sendto(reply, addr)

    def _respond(
        self, data: bytes, tcp: bool, *, family: str = "1"
    ) -> bytes | dns.message.Message | None:
        """Answer from the table (bytes), ask to forward (the parsed query), or drop (None)."""
        if self._phase is not ServingPhase.SERVING:
            self.dropped_unavailable += 1
            return None
        start_ns = self._clock.now_ns()
        state = (self._table.version, self.synced)
        if state != self._answers_state or len(self._answers) >= ANSWER_CACHE_ENTRIES:
            self._answers.clear()
            self._answers_state = state
        key = (tcp, data[2:])
        hit = self._answers.get(key)
        if hit is not None:
            tail, rcode, truncated, qtype = hit
            self._rcodes[rcode] += 1
            self.truncated += truncated
            self.metrics.cache_lookup(hit=True, denial=rcode == dns.rcode.NXDOMAIN)
            # The answer is the query's ID and the cached tail.
            self._report(start_ns, len(data), 2 + len(tail), tcp, family, qtype, rcode, "cache")
            return data[:2] + tail
        verdict = wire.screen(data)
        if verdict is wire.Screening.IGNORE:
            self.dropped_malformed += 1
            return None
        if verdict is not wire.Screening.ACCEPT:
            return self._reject(data, verdict)
        try:
            query = dns.message.from_wire(data)
        except Exception:  # any body dnspython cannot parse: miekg answers FORMERR
            return self._reject(data, wire.Screening.FORMERR)
        if query.edns > 0:  # not reported: CoreDNS answers BADVERS before its plugins
            reply = wire.bad_version_reply(query).to_wire()
            self._rcodes[dns.rcode.BADVERS] += 1
            return reply
        response = self._build(query)
        if response is None:
            return query
        wire_bytes = wire.to_wire_fitting(response, wire.buffer_size(query, tcp=tcp))
        rcode, truncated = int(response.rcode()), bool(wire_bytes[2] & TC_BIT)
        qtype = int(query.question[0].rdtype) if query.question else 0
        self._answers[key] = (wire_bytes[2:], rcode, truncated, qtype)
        self._rcodes[rcode] += 1
        self.truncated += truncated
        self.metrics.cache_lookup(hit=False, denial=False)
        self._report(start_ns, len(data), len(wire_bytes), tcp, family, qtype, rcode, "kubernetes")
        return wire_bytes

    def _reject(self, data: bytes, verdict: wire.Screening) -> bytes:
        """Header-only FORMERR / NOTIMP, as miekg/dns writes them (not in coredns_* metrics)."""
        self.dropped_malformed += verdict is wire.Screening.FORMERR
        rcode = dns.rcode.NOTIMP if verdict is wire.Screening.NOTIMP else dns.rcode.FORMERR
        self._rcodes[rcode] += 1
        return wire.header_only_reply(data, rcode)

    def _report(
        self,
        start_ns: int,
        request_size: int,
        response_size: int,
        tcp: bool,
        family: str,
        qtype: int,
        rcode: int,
        plugin: str,
    ) -> None:
        """One answered request into the coredns_* metrics; sizes in bytes, as on the wire."""
        self.metrics.report(
            proto="tcp" if tcp else "udp",
            family=family,
            qtype=qtype,
            rcode=dns.rcode.to_text(dns.rcode.Rcode(rcode)),
            plugin=plugin,
            duration_s=(self._clock.now_ns() - start_ns) / NS_PER_S,
            request_size=request_size,
            response_size=response_size,
        )

    def _build(self, query: dns.message.Message) -> dns.message.Message | None:
        response = dns.message.make_response(query)
        question = query.question[0]
        if not self._table.in_zone(question.name):
            if self._upstream is not None:
                return None
            response.set_rcode(dns.rcode.NXDOMAIN)
            return response
        if not self.synced:
            response.set_rcode(dns.rcode.SERVFAIL)  # CoreDNS: cluster names fail until synced
            return response
        answer = self._table.lookup(question.name, question.rdtype)
        response.flags |= dns.flags.AA
        response.set_rcode(dns.rcode.Rcode(int(answer.rcode)))
        response.answer.extend(answer.answer)
        response.authority.extend(answer.authority)
        response.additional.extend(answer.additional)
        return response

    async def _forward(self, query: dns.message.Message, tcp: bool) -> bytes | None:
        assert self._upstream is not None
        host, port = self._upstream
        timeout_s = self._config.forward_timeout_s
        start_ns = self._clock.now_ns()
        self.forwarded += 1
        try:
            if tcp:
                reply = await dns.asyncquery.tcp(query, host, timeout_s, port)
            else:
                reply = await dns.asyncquery.udp(query, host, timeout_s, port)
        except (dns.exception.DNSException, OSError, ValueError):
            self.forward_errors += 1
            reply = dns.message.make_response(query)
            reply.set_rcode(dns.rcode.SERVFAIL)
        self._rcodes[int(reply.rcode())] += 1
        answer = wire.to_wire_fitting(reply, wire.buffer_size(query, tcp=tcp))
        qtype, rcode = int(query.question[0].rdtype), int(reply.rcode())
        request_size = len(query.to_wire())
        self._report(start_ns, request_size, len(answer), tcp, "1", qtype, rcode, "forward")
        return answer

    async def _on_tcp_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._tcp_writers.add(writer)
        peer = writer.get_extra_info("peername")
        family = "2" if peer and ":" in str(peer[0]) else "1"
        timeout_s = self._config.tcp_read_timeout_s
        try:
            while True:  # several queries per connection, until a timeout, the client or stop()
                async with asyncio.timeout(timeout_s):
                    length = int.from_bytes(await reader.readexactly(2), "big")
                    query = await reader.readexactly(length)
                timeout_s = self._config.tcp_idle_timeout_s  # miekg: later reads wait this long
                reply = await self.resolve(query, tcp=True, family=family)
                if reply is not None:
                    writer.write(len(reply).to_bytes(2, "big") + reply)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass
        finally:
            self._tcp_writers.discard(writer)
            writer.close()

    def _close_tcp_clients(self) -> None:
        for writer in list(self._tcp_writers):
            writer.close()
        self._tcp_writers.clear()

    # -- reporting -----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Synced?, records, watch broken since, restarts, queries by rcode."""
        now_ns = self._clock.now_ns()
        since_ns = self.api_down_since_ns()
        return {
            "phase": self._phase.value,
            "synced": self.synced,
            "records": self._table.record_count,
            "table_version": self._table.version,
            "skipped_addresses": self._table.skipped_addresses,
            "watch_broken_since_s": None if since_ns is None else since_ns / NS_PER_S,
            "api_down_for_s": None if since_ns is None else (now_ns - since_ns) / NS_PER_S,
            "relists": sum(max(i.lists - 1, 0) for i in self._informers),
            "restarts": self.restarts,
            "queries_by_rcode": {
                dns.rcode.Rcode.to_text(code): count for code, count in sorted(self._rcodes.items())
            },
            "dropped_unavailable": self.dropped_unavailable,
            "dropped_malformed": self.dropped_malformed,
            "truncated": self.truncated,
            "forwarded": self.forwarded,
            "forward_errors": self.forward_errors,
            "tcp_connections": len(self._tcp_writers),
        }
