"""The cluster DNS's record table and answer logic: Kubernetes objects in, DNS answers out. No I/O.

A ``RecordTable`` holds the Services and EndpointSlices an informer delivered (plain JSON dicts, as
the API serves them) and, per Service, the records CoreDNS's kubernetes plugin would answer:

- ``<svc>.<ns>.svc.<zone>``: A/AAAA of the ClusterIP(s); for a headless Service (clusterIP None)
  the ready endpoint addresses instead.
- ``_<port>._<proto>.<svc>.<ns>.svc.<zone>``: SRV per named port.
- ``<hostname>.<svc>.<ns>.svc.<zone>`` per endpoint of a headless Service (the endpoint's hostname,
  or its address with dashes, as CoreDNS names endpoints without one).
- PTR for ClusterIPs and ready endpoint addresses (``reverse.py``).
- ``<a-b-c-d>.<ns>.pod.<zone>``: the address in the name (``pods insecure``).

Only addresses in TEST-NET-1/2 or loopback are ever answered; a Service or endpoint carrying any
other address has that address skipped and counted, so the sim can never point traffic elsewhere.

Cost: a Service change or a LIST builds that Service's records in one pass over its slices
(``service_records.py``); an EndpointSlice event adds the slice's new records, then takes back its
old ones (``owners.py`` counts each record's contributors), so it costs what the slice holds,
whatever the size of its Service. Records the event leaves in place keep their place in answers.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.NS
import dns.rdtypes.ANY.SOA
import dns.rrset

from loadlab.sim.dns.owners import OwnerTable, address_rdata, srv_weight
from loadlab.sim.dns.reverse import ReverseIndex, pod_address
from loadlab.sim.dns.service_records import (
    Contribution,
    ServiceKey,
    ServiceRecords,
    SliceKey,
    allowed_address,
    service_records,
    slice_records,
)
from loadlab.sim.k8s.objects import SERVICE_NAME_LABEL, JsonObj

__all__ = ["Answer", "Rcode", "RecordTable", "allowed_address"]

# dnspython's rdata constructors carry no annotations, hence the no-untyped-call ignores below.

# CoreDNS kubernetes plugin SOA timers (refresh 7200, retry 1800, expire 86400); the minimum is the
# negative TTL. The SOA serial is the table's version, so it changes whenever the records do.
SOA_REFRESH_S = 7200
SOA_RETRY_S = 1800
SOA_EXPIRE_S = 86400

_ADDRESS_TYPES = (dns.rdatatype.A, dns.rdatatype.AAAA)


class Rcode(enum.IntEnum):
    """The DNS response codes the answer logic produces (RFC 1035 numbering)."""

    NOERROR = 0
    SERVFAIL = 2
    NXDOMAIN = 3


@dataclass(frozen=True)
class Answer:
    """What the server says for one question in the zone."""

    rcode: Rcode
    answer: tuple[dns.rrset.RRset, ...] = ()
    """Records answering the question (empty with NOERROR means NODATA)."""
    authority: tuple[dns.rrset.RRset, ...] = ()
    """The zone's SOA for NXDOMAIN and NODATA, so resolvers can cache the denial."""
    additional: tuple[dns.rrset.RRset, ...] = ()
    """Addresses of SRV targets."""


def _meta(obj: JsonObj) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or "default"), str(meta.get("name") or "")


class RecordTable:
    """Services and EndpointSlices, and the DNS records they make. Mutated by the informer."""

    def __init__(self, zone: str = "cluster.local", *, ttl_s: int = 30, negative_ttl_s: int = 5):
        self.zone = dns.name.from_text(zone)
        self.ttl_s = ttl_s
        self.negative_ttl_s = negative_ttl_s
        self.version = 0
        """Bumped on every change, so encoded answers can be cached per version."""
        self._svc_origin = dns.name.from_text("svc", self.zone)
        self._pod_origin = dns.name.from_text("pod", self.zone)
        self._reverse = ReverseIndex()
        self._owners = OwnerTable(self.zone, ttl_s)
        self._services: dict[ServiceKey, JsonObj] = {}
        self._slices: dict[SliceKey, JsonObj] = {}
        self._slices_of: dict[ServiceKey, set[SliceKey]] = {}
        self._states: dict[ServiceKey, ServiceRecords] = {}
        self._skipped = 0
        self._soa: tuple[int, dns.rrset.RRset] | None = None

    # -- feeding -------------------------------------------------------------------------------

    def replace_services(self, services: Iterable[JsonObj]) -> None:
        """Replace every Service (after a LIST)."""
        old = set(self._services)
        self._services = {_meta(s): s for s in services}
        for key in old | set(self._services):
            self._rebuild(key)

    def replace_endpoint_slices(self, slices: Iterable[JsonObj]) -> None:
        """Replace every EndpointSlice (after a LIST)."""
        old = set(self._slices_of)
        self._slices = {}
        self._slices_of = {}
        for s in slices:
            self._unindex_slice(_meta(s))  # a name listed twice: the last one counts
            self._index_slice(s)
        for key in old | set(self._slices_of):
            self._rebuild(key)

    def upsert_service(self, service: JsonObj) -> None:
        key = _meta(service)
        self._services[key] = service
        self._rebuild(key)

    def delete_service(self, service: JsonObj) -> None:
        key = _meta(service)
        self._services.pop(key, None)
        self._rebuild(key)

    def upsert_endpoint_slice(self, endpoint_slice: JsonObj) -> None:
        slice_key = _meta(endpoint_slice)
        before = self._unindex_slice(slice_key)
        after = self._index_slice(endpoint_slice)
        for key in {before, after}:
            if key is not None:
                self._refresh_slice(key, slice_key)

    def delete_endpoint_slice(self, endpoint_slice: JsonObj) -> None:
        slice_key = _meta(endpoint_slice)
        key = self._unindex_slice(slice_key)
        if key is not None:
            self._refresh_slice(key, slice_key)

    def clear(self) -> None:
        """Forget everything (a restarted server starts empty)."""
        self.replace_services(())
        self.replace_endpoint_slices(())

    def _index_slice(self, endpoint_slice: JsonObj) -> ServiceKey | None:
        slice_key = _meta(endpoint_slice)
        labels = (endpoint_slice.get("metadata") or {}).get("labels") or {}
        service = labels.get(SERVICE_NAME_LABEL)
        self._slices[slice_key] = endpoint_slice
        if not service:
            return None
        key = (slice_key[0], str(service))
        self._slices_of.setdefault(key, set()).add(slice_key)
        return key

    def _unindex_slice(self, slice_key: SliceKey) -> ServiceKey | None:
        old = self._slices.pop(slice_key, None)
        if old is None:
            return None
        service = ((old.get("metadata") or {}).get("labels") or {}).get(SERVICE_NAME_LABEL)
        if not service:
            return None
        key = (slice_key[0], str(service))
        members = self._slices_of.get(key)
        if members is not None:
            members.discard(slice_key)
            if not members:
                del self._slices_of[key]
        return key

    # -- building ------------------------------------------------------------------------------

    def _rebuild(self, key: ServiceKey) -> None:
        """Build one Service's records from scratch: its spec changed, or a LIST replaced what
        the table knew. One pass over its slices, in name order."""
        old = self._states.pop(key, None)
        if old is not None:
            for part in (old.own, *old.slices.values()):
                self._take_back(part)
        service = self._services.get(key)
        if service is not None:
            state = service_records(key, service, self._svc_origin)
            self._states[key] = state
            self._put(state.own)
            for slice_key in sorted(self._slices_of.get(key, ())):
                part = slice_records(state, self._slices[slice_key])
                state.slices[slice_key] = part
                state.targets += part.targets
                self._put(part)
            self._weigh(state)
        self.version += 1

    def _refresh_slice(self, key: ServiceKey, slice_key: SliceKey) -> None:
        """One slice of Service ``key`` came, changed or went: add what it holds now, then take
        back what it held, so records it keeps stay where they are in the answers."""
        state = self._states.get(key)
        if state is not None:
            old = state.slices.pop(slice_key, None)
            if slice_key in self._slices_of.get(key, ()):
                new = slice_records(state, self._slices[slice_key])
                state.slices[slice_key] = new
                state.targets += new.targets
                self._put(new)
            if old is not None:
                state.targets -= old.targets
                self._take_back(old)
            self._weigh(state)
        self.version += 1

    def _weigh(self, state: ServiceRecords) -> None:
        """Spread the SRV weight of a headless Service over its targets, as they now are."""
        weight = srv_weight(state.targets)
        for srv_name, _, _ in state.srv_ports:
            self._owners.set_srv_weight(srv_name, weight)

    def _put(self, part: Contribution) -> None:
        self._skipped += part.skipped_addresses
        self._reverse.add(part.service_ptrs, part.endpoint_ptrs)
        for name, rdtype, key in part.records:
            self._owners.add(name, rdtype, key)

    def _take_back(self, part: Contribution) -> None:
        self._skipped -= part.skipped_addresses
        self._reverse.remove(part.service_ptrs, part.endpoint_ptrs)
        for name, rdtype, key in part.records:
            self._owners.remove(name, rdtype, key)

    # -- answering -----------------------------------------------------------------------------

    @property
    def record_count(self) -> int:
        """Number of resource records the table answers with."""
        return self._owners.record_count

    @property
    def skipped_addresses(self) -> int:
        """Addresses outside TEST-NET-1/2 and loopback, currently left out of the answers."""
        return self._skipped

    def in_zone(self, qname: dns.name.Name) -> bool:
        """The cluster zone, and the reverse names the table has a PTR for (others fall
        through, as the kubeadm Corefile's ``fallthrough in-addr.arpa ip6.arpa``)."""
        return qname.is_subdomain(self.zone) or qname in self._reverse

    def soa(self) -> dns.rrset.RRset:
        """The zone's SOA (serial = table version), built once per version."""
        if self._soa is not None and self._soa[0] == self.version:
            return self._soa[1]
        rdata = dns.rdtypes.ANY.SOA.SOA(  # type: ignore[no-untyped-call]
            dns.rdataclass.IN,
            dns.rdatatype.SOA,
            dns.name.from_text("ns.dns", self.zone),
            dns.name.from_text("hostmaster", self.zone),
            self.version % 2**32,
            SOA_REFRESH_S,
            SOA_RETRY_S,
            SOA_EXPIRE_S,
            self.negative_ttl_s,
        )
        rrset = dns.rrset.from_rdata_list(self.zone, self.negative_ttl_s, [rdata])
        self._soa = (self.version, rrset)
        return rrset

    def lookup(self, qname: dns.name.Name, rdtype: int) -> Answer:
        """Answer one question about a name in the zone (callers check ``in_zone`` first)."""
        if qname in self._reverse:
            return self._lookup_reverse(qname, rdtype)
        if qname.is_subdomain(self._pod_origin):
            return self._lookup_pod(qname, rdtype)
        owner = self._owners.rrsets(qname)
        if owner is not None:
            if rdtype == dns.rdatatype.ANY:
                return Answer(Rcode.NOERROR, tuple(owner.values()))
            rrset = owner.get(rdtype)
            if rrset is None:
                return Answer(Rcode.NOERROR, authority=(self.soa(),))
            return Answer(Rcode.NOERROR, (rrset,), additional=self._additional(rrset))
        if qname == self.zone:
            if rdtype == dns.rdatatype.SOA:
                return Answer(Rcode.NOERROR, (self.soa(),))
            if rdtype == dns.rdatatype.NS:
                ns = dns.rdtypes.ANY.NS.NS(  # type: ignore[no-untyped-call]
                    dns.rdataclass.IN, dns.rdatatype.NS, dns.name.from_text("ns.dns", self.zone)
                )
                return Answer(Rcode.NOERROR, (dns.rrset.from_rdata_list(qname, self.ttl_s, [ns]),))
            return Answer(Rcode.NOERROR, authority=(self.soa(),))
        if self._owners.is_interior(qname):
            return Answer(Rcode.NOERROR, authority=(self.soa(),))
        return Answer(Rcode.NXDOMAIN, authority=(self.soa(),))

    def _lookup_reverse(self, qname: dns.name.Name, rdtype: int) -> Answer:
        ptr = self._reverse.ptr(qname, self.ttl_s)
        if ptr is not None and rdtype in (dns.rdatatype.PTR, dns.rdatatype.ANY):
            return Answer(Rcode.NOERROR, (ptr,))
        return Answer(Rcode.NOERROR, authority=(self.soa(),))

    def _lookup_pod(self, qname: dns.name.Name, rdtype: int) -> Answer:
        """``pods insecure``: any address-shaped name answers that address; the namespace and
        ``pod.<zone>`` themselves exist but hold nothing (NODATA)."""
        depth = len(qname.relativize(self._pod_origin).labels)
        if depth <= 1:
            return Answer(Rcode.NOERROR, authority=(self.soa(),))
        address = pod_address(qname, self._pod_origin)
        if address is None or not allowed_address(address):
            # Not an address, or one beyond TEST-NET / loopback: the sim never answers those.
            return Answer(Rcode.NXDOMAIN, authority=(self.soa(),))
        rdata = address_rdata(ipaddress.ip_address(address))
        if rdtype not in (rdata.rdtype, dns.rdatatype.ANY):
            return Answer(Rcode.NOERROR, authority=(self.soa(),))
        return Answer(Rcode.NOERROR, (dns.rrset.from_rdata_list(qname, self.ttl_s, [rdata]),))

    def _additional(self, rrset: dns.rrset.RRset) -> tuple[dns.rrset.RRset, ...]:
        if rrset.rdtype != dns.rdatatype.SRV:
            return ()
        extra: list[dns.rrset.RRset] = []
        for target in dict.fromkeys(rdata.target for rdata in rrset):
            by_type = self._owners.rrsets(target) or {}
            extra.extend(r for t, r in by_type.items() if t in _ADDRESS_TYPES)
        return tuple(extra)
