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
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.NS
import dns.rdtypes.ANY.SOA
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.rdtypes.IN.SRV
import dns.rrset

from loadlab.sim.dns.reverse import ReverseIndex, ReversePair, pod_address
from loadlab.sim.k8s.objects import SERVICE_NAME_LABEL, JsonObj

# dnspython's rdata constructors carry no annotations, hence the no-untyped-call ignores below.

# House rule: simulated records point only into TEST-NET-1, TEST-NET-2 (RFC 5737) or loopback.
ALLOWED_NETWORKS = (
    ipaddress.ip_network("192.0.2.0/24"),
    ipaddress.ip_network("198.51.100.0/24"),
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)

# CoreDNS kubernetes plugin SOA timers (refresh 7200, retry 1800, expire 86400); the minimum is the
# negative TTL. The SOA serial is the table's version, so it changes whenever the records do.
SOA_REFRESH_S = 7200
SOA_RETRY_S = 1800
SOA_EXPIRE_S = 86400

# SRV priority 0 and a weight split evenly over the targets (CoreDNS spreads 100 over them).
SRV_PRIORITY = 0
SRV_TOTAL_WEIGHT = 100

_ADDRESS_TYPES = (dns.rdatatype.A, dns.rdatatype.AAAA)

ServiceKey = tuple[str, str]  # (namespace, name)


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


@dataclass
class _ServiceRecords:
    """The records one Service contributes: owner name -> rdtype -> rdatas."""

    names: dict[dns.name.Name, dict[int, list[dns.rdata.Rdata]]] = field(default_factory=dict)
    skipped_addresses: int = 0
    service_ptrs: list[ReversePair] = field(default_factory=list)
    endpoint_ptrs: list[ReversePair] = field(default_factory=list)

    def add(self, name: dns.name.Name, rdata: dns.rdata.Rdata) -> None:
        rdatas = self.names.setdefault(name, {}).setdefault(rdata.rdtype, [])
        if rdata not in rdatas:
            rdatas.append(rdata)


def allowed_address(text: str) -> bool:
    """True if ``text`` is an IP address the sim may answer with (TEST-NET-1/2 or loopback)."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    return any(address in net for net in ALLOWED_NETWORKS)


def _address_rdata(text: str) -> dns.rdata.Rdata:
    if ipaddress.ip_address(text).version == 4:
        return dns.rdtypes.IN.A.A(dns.rdataclass.IN, dns.rdatatype.A, text)  # type: ignore[no-untyped-call]
    return dns.rdtypes.IN.AAAA.AAAA(  # type: ignore[no-untyped-call]
        dns.rdataclass.IN, dns.rdatatype.AAAA, text
    )


def _meta(obj: JsonObj) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or "default"), str(meta.get("name") or "")


def _label_name(text: str, origin: dns.name.Name) -> dns.name.Name | None:
    """``text`` as a single label under ``origin``, or None if it cannot be one."""
    try:
        return dns.name.Name((text.encode("ascii"),)).concatenate(origin)
    except (UnicodeError, dns.name.NameTooLong, dns.name.LabelTooLong, dns.name.EmptyLabel):
        return None


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
        self._services: dict[ServiceKey, JsonObj] = {}
        self._slices: dict[tuple[str, str], JsonObj] = {}
        self._slices_of: dict[ServiceKey, set[tuple[str, str]]] = {}
        self._records: dict[ServiceKey, _ServiceRecords] = {}
        self._owners: dict[dns.name.Name, dict[int, dns.rrset.RRset]] = {}
        self._interior: dict[dns.name.Name, int] = {}  # empty non-terminals -> reference count
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
        before = self._unindex_slice(_meta(endpoint_slice))
        after = self._index_slice(endpoint_slice)
        for key in {before, after}:
            if key is not None:
                self._rebuild(key)

    def delete_endpoint_slice(self, endpoint_slice: JsonObj) -> None:
        key = self._unindex_slice(_meta(endpoint_slice))
        if key is not None:
            self._rebuild(key)

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

    def _unindex_slice(self, slice_key: tuple[str, str]) -> ServiceKey | None:
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
        old = self._records.pop(key, None)
        if old is not None:
            self._unpublish(old)
        service = self._services.get(key)
        if service is not None:
            new = self._build(key, service)
            self._records[key] = new
            self._publish(new)
        self.version += 1

    def _build(self, key: ServiceKey, service: JsonObj) -> _ServiceRecords:
        records = _ServiceRecords()
        namespace, name = key
        ns_origin = _label_name(namespace, self._svc_origin)
        svc_name = _label_name(name, ns_origin) if ns_origin is not None else None
        if svc_name is None:
            return records
        spec = service.get("spec") or {}
        if spec.get("type") == "ExternalName":
            return records  # a CNAME out of the sim's addresses: not modelled
        cluster_ips = [str(ip) for ip in spec.get("clusterIPs") or [spec.get("clusterIP")] if ip]
        ports = [p for p in spec.get("ports") or [] if p.get("name")]
        if "None" in cluster_ips:
            self._build_headless(records, svc_name, key, ports)
            return records
        self._endpoint_ptrs(records, svc_name, key)
        for ip in cluster_ips:
            if allowed_address(ip):
                records.add(svc_name, _address_rdata(ip))
                records.service_ptrs.append((ip, svc_name))
            else:
                records.skipped_addresses += 1
        if records.names:
            for port in ports:
                srv_name = self._srv_name(port, svc_name)
                if srv_name is not None:
                    records.add(srv_name, self._srv(int(port.get("port", 0)), svc_name, 1))
        return records

    def _build_headless(
        self,
        records: _ServiceRecords,
        svc_name: dns.name.Name,
        key: ServiceKey,
        ports: list[JsonObj],
    ) -> None:
        targets: list[tuple[dns.name.Name, dict[str, int]]] = []
        for slice_key in sorted(self._slices_of.get(key, ())):
            endpoint_slice = self._slices[slice_key]
            if endpoint_slice.get("addressType", "IPv4") not in ("IPv4", "IPv6"):
                continue
            slice_ports = {
                str(p.get("name") or ""): int(p.get("port") or 0)
                for p in endpoint_slice.get("ports") or []
            }
            for endpoint in endpoint_slice.get("endpoints") or []:
                # conditions.ready unset means ready (discovery.k8s.io/v1 API reference).
                if (endpoint.get("conditions") or {}).get("ready") is False:
                    continue
                for address in endpoint.get("addresses") or []:
                    if not allowed_address(str(address)):
                        records.skipped_addresses += 1
                        continue
                    label = endpoint.get("hostname") or str(address).replace(".", "-").replace(
                        ":", "-"
                    )
                    host = _label_name(str(label), svc_name)
                    rdata = _address_rdata(str(address))
                    records.add(svc_name, rdata)
                    if host is not None:
                        records.add(host, rdata)
                        records.endpoint_ptrs.append((str(address), host))
                        targets.append((host, slice_ports))
        for port in ports:
            srv_name = self._srv_name(port, svc_name)
            if srv_name is None:
                continue
            port_name = str(port.get("name"))
            for host, slice_ports in targets:
                number = slice_ports.get(port_name, int(port.get("targetPort") or 0))
                records.add(srv_name, self._srv(number, host, len(targets)))

    def _endpoint_ptrs(
        self, records: _ServiceRecords, svc_name: dns.name.Name, key: ServiceKey
    ) -> None:
        """PTRs of a ClusterIP Service's ready endpoints (headless ones get theirs as they are
        built): CoreDNS answers them for every Service."""
        for slice_key in sorted(self._slices_of.get(key, ())):
            for endpoint in self._slices[slice_key].get("endpoints") or []:
                if (endpoint.get("conditions") or {}).get("ready") is False:
                    continue
                for address in endpoint.get("addresses") or []:
                    if not allowed_address(str(address)):
                        continue  # counted once, as the Service's own records skip it
                    label = endpoint.get("hostname") or str(address).replace(".", "-").replace(
                        ":", "-"
                    )
                    host = _label_name(str(label), svc_name)
                    if host is not None:
                        records.endpoint_ptrs.append((str(address), host))

    def _srv_name(self, port: JsonObj, svc_name: dns.name.Name) -> dns.name.Name | None:
        proto = str(port.get("protocol") or "TCP").lower()
        proto_name = _label_name(f"_{proto}", svc_name)
        if proto_name is None:
            return None
        return _label_name(f"_{port.get('name')}", proto_name)

    def _srv(self, port: int, target: dns.name.Name, count: int) -> dns.rdata.Rdata:
        weight = max(1, SRV_TOTAL_WEIGHT // max(count, 1))
        return dns.rdtypes.IN.SRV.SRV(  # type: ignore[no-untyped-call]
            dns.rdataclass.IN, dns.rdatatype.SRV, SRV_PRIORITY, weight, port, target
        )

    def _publish(self, records: _ServiceRecords) -> None:
        self._skipped += records.skipped_addresses
        self._reverse.add(records.service_ptrs, records.endpoint_ptrs)
        for name, by_type in records.names.items():
            rrsets: dict[int, dns.rrset.RRset] = {}
            for rdtype, rdatas in by_type.items():
                rrsets[rdtype] = dns.rrset.from_rdata_list(name, self.ttl_s, rdatas)
            self._owners[name] = rrsets
            for parent in self._parents(name):
                self._interior[parent] = self._interior.get(parent, 0) + 1

    def _unpublish(self, records: _ServiceRecords) -> None:
        self._skipped -= records.skipped_addresses
        self._reverse.remove(records.service_ptrs, records.endpoint_ptrs)
        for name in records.names:
            self._owners.pop(name, None)
            for parent in self._parents(name):
                left = self._interior[parent] - 1
                if left:
                    self._interior[parent] = left
                else:
                    del self._interior[parent]

    def _parents(self, name: dns.name.Name) -> Iterable[dns.name.Name]:
        parent = name.parent()
        while parent != self.zone and parent.is_subdomain(self.zone):
            yield parent
            parent = parent.parent()

    # -- answering -----------------------------------------------------------------------------

    @property
    def record_count(self) -> int:
        """Number of resource records the table answers with."""
        return sum(len(rrset) for rrsets in self._owners.values() for rrset in rrsets.values())

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
        owner = self._owners.get(qname)
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
        if qname in self._interior:
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
        rdata = _address_rdata(address)
        if rdtype not in (rdata.rdtype, dns.rdatatype.ANY):
            return Answer(Rcode.NOERROR, authority=(self.soa(),))
        return Answer(Rcode.NOERROR, (dns.rrset.from_rdata_list(qname, self.ttl_s, [rdata]),))

    def _additional(self, rrset: dns.rrset.RRset) -> tuple[dns.rrset.RRset, ...]:
        if rrset.rdtype != dns.rdatatype.SRV:
            return ()
        extra: list[dns.rrset.RRset] = []
        for target in dict.fromkeys(rdata.target for rdata in rrset):
            by_type = self._owners.get(target, {})
            extra.extend(r for t, r in by_type.items() if t in _ADDRESS_TYPES)
        return tuple(extra)
