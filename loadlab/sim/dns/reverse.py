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
import dns.reversename
import dns.rrset

ReversePair = tuple[str, dns.name.Name]  # (address, the name it points back to)


class ReverseIndex:
    """Address -> names, for ClusterIPs and for endpoints, each counted so Services can come
    and go in any order."""

    def __init__(self) -> None:
        self._services: dict[dns.name.Name, list[dns.name.Name]] = {}
        self._endpoints: dict[dns.name.Name, list[dns.name.Name]] = {}

    def add(self, services: Iterable[ReversePair], endpoints: Iterable[ReversePair]) -> None:
        for index, pairs in ((self._services, services), (self._endpoints, endpoints)):
            for address, target in pairs:
                index.setdefault(dns.reversename.from_address(address), []).append(target)

    def remove(self, services: Iterable[ReversePair], endpoints: Iterable[ReversePair]) -> None:
        for index, pairs in ((self._services, services), (self._endpoints, endpoints)):
            for address, target in pairs:
                owner = dns.reversename.from_address(address)
                targets = index.get(owner)
                if targets is None or target not in targets:
                    continue
                targets.remove(target)
                if not targets:
                    del index[owner]

    def clear(self) -> None:
        self._services.clear()
        self._endpoints.clear()

    def __contains__(self, qname: dns.name.Name) -> bool:
        return qname in self._services or qname in self._endpoints

    def ptr(self, qname: dns.name.Name, ttl_s: int) -> dns.rrset.RRset | None:
        """The PTR RRset for a reverse name, or None when neither index holds it."""
        targets = self._services.get(qname)
        if targets:
            targets = targets[:1]  # CoreDNS returns the first Service and stops
        else:
            targets = list(dict.fromkeys(self._endpoints.get(qname, ())))
        if not targets:
            return None
        rdatas = [
            dns.rdtypes.ANY.PTR.PTR(dns.rdataclass.IN, dns.rdatatype.PTR, target)  # type: ignore[no-untyped-call]
            for target in targets
        ]
        return dns.rrset.from_rdata_list(qname, ttl_s, rdatas)


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
