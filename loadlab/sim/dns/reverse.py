"""PTR records for Service ClusterIPs and endpoint addresses, as CoreDNS's kubernetes plugin
answers them (``plugin/kubernetes/reverse.go``, ``serviceRecordForIP``). No I/O.

A ClusterIP wins: its PTR names the first Service holding it, ``<svc>.<ns>.svc.<zone>``, and
endpoints are then not searched. Otherwise every ready endpoint with that address answers, as
``<hostname>.<svc>.<ns>.svc.<zone>`` (the hostname, or the address with dashes). CoreDNS does so
for the endpoints of every Service, not only headless ones. Names without a PTR fall through to
the next plugin, as the kubeadm Corefile says (``fallthrough in-addr.arpa ip6.arpa``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.PTR
import dns.rrset

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
ReversePair = tuple[IpAddress, dns.name.Name]  # (address, the name it points back to)


def reverse_name(address: IpAddress) -> dns.name.Name:
    """``d.c.b.a.in-addr.arpa.`` (or the ip6.arpa nibbles): ``dns.reversename.from_address``'s
    name, without parsing the address again. Built when a pair is added or removed rather than
    kept with it: one name per endpoint would cost ~400 bytes each."""
    return dns.name.Name((*address.reverse_pointer.encode("ascii").split(b"."), b""))


class ReverseIndex:
    """Reverse name -> names, for ClusterIPs and for endpoints, each counted so Services and
    slices can come and go in any order at a cost per pair, not per name already held there
    (in the sim, hundreds of endpoints share a pod address)."""

    def __init__(self) -> None:
        self._services: dict[dns.name.Name, dict[dns.name.Name, int]] = {}
        self._endpoints: dict[dns.name.Name, dict[dns.name.Name, int]] = {}
        self._ptrs: dict[dns.name.Name, tuple[int, dns.rrset.RRset]] = {}
        """PTR RRsets built since their name last changed, with their TTL."""

    def add(self, services: Iterable[ReversePair], endpoints: Iterable[ReversePair]) -> None:
        for index, pairs in ((self._services, services), (self._endpoints, endpoints)):
            for address, target in pairs:
                owner = reverse_name(address)
                targets = index.setdefault(owner, {})
                targets[target] = targets.get(target, 0) + 1
                self._ptrs.pop(owner, None)

    def remove(self, services: Iterable[ReversePair], endpoints: Iterable[ReversePair]) -> None:
        for index, pairs in ((self._services, services), (self._endpoints, endpoints)):
            for address, target in pairs:
                owner = reverse_name(address)
                targets = index.get(owner)
                count = targets.get(target) if targets is not None else None
                if targets is None or count is None:
                    continue
                if count > 1:
                    targets[target] = count - 1
                    continue
                del targets[target]
                if not targets:
                    del index[owner]
                self._ptrs.pop(owner, None)

    def clear(self) -> None:
        self._services.clear()
        self._endpoints.clear()
        self._ptrs.clear()

    def __contains__(self, qname: dns.name.Name) -> bool:
        return qname in self._services or qname in self._endpoints

    def ptr(self, qname: dns.name.Name, ttl_s: int) -> dns.rrset.RRset | None:
        """The PTR RRset for a reverse name, or None when neither index holds it."""
        built = self._ptrs.get(qname)
        if built is not None and built[0] == ttl_s:
            return built[1]
        services = self._services.get(qname)
        if services:
            targets = [next(iter(services))]  # CoreDNS returns the first Service and stops
        else:
            targets = list(self._endpoints.get(qname, ()))
        if not targets:
            return None
        rdatas = [
            dns.rdtypes.ANY.PTR.PTR(dns.rdataclass.IN, dns.rdatatype.PTR, target)  # type: ignore[no-untyped-call]
            for target in targets
        ]
        rrset = dns.rrset.from_rdata_list(qname, ttl_s, rdatas)
        self._ptrs[qname] = (ttl_s, rrset)
        return rrset


def pod_address(qname: dns.name.Name, pod_origin: dns.name.Name) -> str | None:
    """The address in ``<a-b-c-d>.<ns>.pod.<zone>``, or None if the first label is not one.

    CoreDNS ``findPods`` (``pods insecure``): three dashes and no "--" make IPv4, else every dash
    is a colon (IPv6); the namespace is not checked against the API here (the sim's DNS does
    not watch Namespaces).
    """
    relative = qname.relativize(pod_origin).labels
    if len(relative) != 2:
        return None
    label = relative[0].decode("ascii", errors="replace")
    if label.count("-") == 3 and "--" not in label:
        text = label.replace("-", ".")
    else:
        text = label.replace("-", ":")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None
