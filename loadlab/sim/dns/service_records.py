"""What one Service, and each of its EndpointSlices, puts in the cluster zone. Pure functions over
their JSON (as the API serves it); no table, no I/O.

A Service's own spec gives its ClusterIP records (A/AAAA, PTR, SRV to the Service name); each
slice gives PTRs for its ready endpoints and, for a headless Service, the Service's addresses, a
name per endpoint and SRV records to those names. Keeping each slice's part apart lets the table
add and take back one slice without looking at the others (``records.py``).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import dns.name
import dns.rdatatype

from loadlab.sim.dns.owners import RecordKey
from loadlab.sim.dns.reverse import IpAddress, ReversePair
from loadlab.sim.k8s.objects import JsonObj
from loadlab.sim.k8s.strategies import HEADLESS

# House rule: simulated records point only into TEST-NET-1, TEST-NET-2 (RFC 5737) or loopback.
ALLOWED_NETWORKS = (
    ipaddress.ip_network("192.0.2.0/24"),
    ipaddress.ip_network("198.51.100.0/24"),
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)

ServiceKey = tuple[str, str]  # (namespace, name)
SliceKey = tuple[str, str]  # (namespace, name)


@dataclass
class Contribution:
    """What a Service's spec, or one of its slices, adds to the zone: kept so that exactly
    this can be taken back when the object changes."""

    records: list[tuple[dns.name.Name, int, RecordKey]] = field(default_factory=list)
    """(owner, type, key), one per contributor (the owner table counts repeats)."""
    service_ptrs: list[ReversePair] = field(default_factory=list)
    endpoint_ptrs: list[ReversePair] = field(default_factory=list)
    targets: int = 0
    """SRV targets of a headless Service (each SRV record weighs 100 / the Service's targets)."""
    skipped_addresses: int = 0
    """Addresses left out for being outside TEST-NET-1/2 and loopback."""


@dataclass
class ServiceRecords:
    """A Service in the zone, and what each of its slices contributed so far."""

    name: dns.name.Name | None
    """``<svc>.<ns>.svc.<zone>``; None when it cannot be a DNS name (then it holds nothing)."""
    headless: bool
    srv_ports: list[tuple[dns.name.Name, str, int]]
    """Headless: (SRV name, port name, port used when a slice does not list it) per named port."""
    own: Contribution
    """The spec's part: ClusterIP addresses, their PTRs and SRVs."""
    slices: dict[SliceKey, Contribution] = field(default_factory=dict)
    targets: int = 0
    """SRV targets over all slices (headless only)."""


def allowed_address(text: str) -> bool:
    """True if ``text`` is an IP address the sim may answer with (TEST-NET-1/2 or loopback)."""
    return allowed_ip(text) is not None


def allowed_ip(text: str) -> IpAddress | None:
    """``text`` as an address if the sim may answer with it, else None."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    return address if any(address in net for net in ALLOWED_NETWORKS) else None


def label_name(text: str, origin: dns.name.Name) -> dns.name.Name | None:
    """``text`` as a single label under ``origin``, or None if it cannot be one."""
    try:  # one Name, not a label then a concatenation: built once per endpoint
        return dns.name.Name((text.encode("ascii"), *origin.labels))
    except (UnicodeError, dns.name.NameTooLong, dns.name.LabelTooLong, dns.name.EmptyLabel):
        return None


def service_records(key: ServiceKey, service: JsonObj, svc_origin: dns.name.Name) -> ServiceRecords:
    """The Service's own records, and what its slices need to build theirs."""
    namespace, name = key
    ns_origin = label_name(namespace, svc_origin)
    svc_name = label_name(name, ns_origin) if ns_origin is not None else None
    spec = service.get("spec") or {}
    if svc_name is None or spec.get("type") == "ExternalName":
        # ExternalName: a CNAME out of the sim's addresses, not modelled.
        return ServiceRecords(None, headless=False, srv_ports=[], own=Contribution())
    cluster_ips = [str(ip) for ip in spec.get("clusterIPs") or [spec.get("clusterIP")] if ip]
    ports = [p for p in spec.get("ports") or [] if p.get("name")]
    own = Contribution()
    if HEADLESS in cluster_ips:
        srv_ports = [
            (srv_name, str(port.get("name")), _port_number(port.get("targetPort")))
            for port in ports
            if (srv_name := _srv_name(port, svc_name)) is not None
        ]
        return ServiceRecords(svc_name, headless=True, srv_ports=srv_ports, own=own)
    for ip in cluster_ips:
        address = allowed_ip(ip)
        if address is None:
            own.skipped_addresses += 1
            continue
        own.records.append((svc_name, _address_type(address), address))
        own.service_ptrs.append((address, svc_name))
    if own.records:
        for port in ports:
            srv_name = _srv_name(port, svc_name)
            if srv_name is not None:
                srv = (_port_number(port.get("port")), svc_name)
                own.records.append((srv_name, dns.rdatatype.SRV, srv))
    return ServiceRecords(svc_name, headless=False, srv_ports=[], own=own)


def slice_records(service: ServiceRecords, endpoint_slice: JsonObj) -> Contribution:
    """What one slice of ``service`` adds: PTRs of its ready endpoints for every Service; for a
    headless one also the Service's addresses, a name per endpoint and SRV records to those."""
    part = Contribution()
    if service.name is None:
        return part
    if service.headless and endpoint_slice.get("addressType", "IPv4") not in ("IPv4", "IPv6"):
        return part
    slice_ports = {
        str(p.get("name") or ""): _port_number(p.get("port"))
        for p in endpoint_slice.get("ports") or []
    }
    for endpoint in endpoint_slice.get("endpoints") or []:
        # conditions.ready unset means ready (discovery.k8s.io/v1 API reference).
        if (endpoint.get("conditions") or {}).get("ready") is False:
            continue
        for text in endpoint.get("addresses") or []:
            _add_endpoint(part, service, endpoint, str(text), slice_ports)
    return part


def _add_endpoint(
    part: Contribution,
    service: ServiceRecords,
    endpoint: JsonObj,
    text: str,
    slice_ports: dict[str, int],
) -> None:
    svc_name = service.name
    assert svc_name is not None  # slice_records returns early for a nameless Service
    address = allowed_ip(text)
    if address is None:
        if service.headless:  # a ClusterIP Service's answers never hold it: not counted
            part.skipped_addresses += 1
        return
    # CoreDNS names an endpoint by its hostname, or by its address with dashes.
    label = endpoint.get("hostname") or text.replace(".", "-").replace(":", "-")
    host = label_name(str(label), svc_name)
    if service.headless:
        rdtype = _address_type(address)
        part.records.append((svc_name, rdtype, address))
        if host is not None:
            part.records.append((host, rdtype, address))
    if host is None:
        return
    part.endpoint_ptrs.append((address, host))
    if service.headless:
        part.targets += 1
        for srv_name, port_name, default in service.srv_ports:
            port = slice_ports.get(port_name, default)
            part.records.append((srv_name, dns.rdatatype.SRV, (port, host)))


def _srv_name(port: JsonObj, svc_name: dns.name.Name) -> dns.name.Name | None:
    proto = str(port.get("protocol") or "TCP").lower()
    proto_name = label_name(f"_{proto}", svc_name)
    if proto_name is None:
        return None
    return label_name(f"_{port.get('name')}", proto_name)


def _address_type(address: IpAddress) -> int:
    return dns.rdatatype.A if address.version == 4 else dns.rdatatype.AAAA


def _port_number(value: object) -> int:
    """A numeric port; a named targetPort (resolved per pod, which the DNS does not see) is 0."""
    try:
        return int(str(value or 0))
    except ValueError:
        return 0
