"""The cluster zone's owner names and their records, counted by contribution. No I/O.

Every record is held as a key (an address, or an SRV's port and target) with a count of how many
endpoints or Services contribute it, so an EndpointSlice event adds and takes back only its own
endpoints: the work is linear in what the slice holds, not in what the Service holds. RRsets are
built when a name is first asked for after a change (``rrsets``), which costs what encoding the
answer costs anyway; a Service with thousands of endpoints is then never re-scanned per event.

Keys keep their first-seen order, so a record that stays keeps its place in the answer and new
ones come last; a Service built in one go (a LIST, a Service change) has its records in
slice-name order, endpoint order within a slice.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.rdtypes.IN.SRV
import dns.rrset

from loadlab.sim.dns.reverse import IpAddress

# dnspython's rdata constructors carry no annotations, hence the no-untyped-call ignores below.

# SRV priority 0 and a weight split evenly over the targets (CoreDNS spreads 100 over them).
SRV_PRIORITY = 0
SRV_TOTAL_WEIGHT = 100

SrvKey = tuple[int, dns.name.Name]  # (port, target)
RecordKey = IpAddress | SrvKey
"""An address for A and AAAA, a (port, target) for SRV."""


def srv_weight(targets: int) -> int:
    """The weight of each of ``targets`` SRV records of one name."""
    return max(1, SRV_TOTAL_WEIGHT // max(targets, 1))


def address_rdata(address: IpAddress) -> dns.rdata.Rdata:
    if address.version == 4:
        return dns.rdtypes.IN.A.A(dns.rdataclass.IN, dns.rdatatype.A, str(address))  # type: ignore[no-untyped-call]
    return dns.rdtypes.IN.AAAA.AAAA(  # type: ignore[no-untyped-call]
        dns.rdataclass.IN, dns.rdatatype.AAAA, str(address)
    )


class _RecordSet:
    """One owner name's records of one type: key -> how many contribute it, and the RRset
    last built from them (None once they changed)."""

    __slots__ = ("counts", "rrset", "weight")

    def __init__(self) -> None:
        self.counts: dict[RecordKey, int] = {}
        self.rrset: dns.rrset.RRset | None = None
        self.weight = srv_weight(1)
        """SRV only: the weight every record of the set carries (100: a ClusterIP Service's
        one target)."""


class OwnerTable:
    """Owner name -> type -> counted records, and the empty non-terminals above them."""

    def __init__(self, zone: dns.name.Name, ttl_s: int) -> None:
        self._zone = zone
        self._ttl_s = ttl_s
        self._owners: dict[dns.name.Name, dict[int, _RecordSet]] = {}
        self._interior: dict[dns.name.Name, int] = {}
        """Names above an owner (empty non-terminals answer NODATA) -> how many owners below."""
        self.record_count = 0
        """Distinct records held (one per key of each set)."""

    def add(self, name: dns.name.Name, rdtype: int, key: RecordKey) -> None:
        by_type = self._owners.get(name)
        if by_type is None:
            by_type = self._owners[name] = {}
            for parent in self._parents(name):
                self._interior[parent] = self._interior.get(parent, 0) + 1
        records = by_type.get(rdtype)
        if records is None:
            records = by_type[rdtype] = _RecordSet()
        count = records.counts.get(key, 0)
        records.counts[key] = count + 1
        if not count:
            records.rrset = None
            self.record_count += 1

    def remove(self, name: dns.name.Name, rdtype: int, key: RecordKey) -> None:
        """Take back one contribution of ``key`` (one that ``add`` made)."""
        by_type = self._owners[name]
        records = by_type[rdtype]
        count = records.counts[key] - 1
        if count:
            records.counts[key] = count
            return
        del records.counts[key]
        records.rrset = None
        self.record_count -= 1
        if records.counts:
            return
        del by_type[rdtype]
        if by_type:
            return
        del self._owners[name]
        for parent in self._parents(name):
            left = self._interior[parent] - 1
            if left:
                self._interior[parent] = left
            else:
                del self._interior[parent]

    def set_srv_weight(self, name: dns.name.Name, weight: int) -> None:
        """Give every SRV record of ``name`` this weight (their target count changed)."""
        records = self._owners.get(name, {}).get(dns.rdatatype.SRV)
        if records is not None and records.weight != weight:
            records.weight = weight
            records.rrset = None

    def __contains__(self, name: dns.name.Name) -> bool:
        return name in self._owners

    def is_interior(self, name: dns.name.Name) -> bool:
        """True for a name that holds nothing but has owners below it."""
        return name in self._interior

    def rrsets(self, name: dns.name.Name) -> dict[int, dns.rrset.RRset] | None:
        """The RRsets of ``name`` by type, or None if it owns nothing."""
        by_type = self._owners.get(name)
        if by_type is None:
            return None
        return {rdtype: self._rrset(name, rdtype, records) for rdtype, records in by_type.items()}

    def _rrset(self, name: dns.name.Name, rdtype: int, records: _RecordSet) -> dns.rrset.RRset:
        if records.rrset is None:
            rdatas: list[dns.rdata.Rdata]
            if rdtype == dns.rdatatype.SRV:
                weight = records.weight
                rdatas = [
                    dns.rdtypes.IN.SRV.SRV(  # type: ignore[no-untyped-call]
                        dns.rdataclass.IN, rdtype, SRV_PRIORITY, weight, *cast(SrvKey, key)
                    )
                    for key in records.counts
                ]
            else:
                rdatas = [address_rdata(cast(IpAddress, key)) for key in records.counts]
            records.rrset = dns.rrset.from_rdata_list(name, self._ttl_s, rdatas)
        return records.rrset

    def _parents(self, name: dns.name.Name) -> Iterator[dns.name.Name]:
        """The names between ``name`` and the zone apex (counted by labels: comparing names
        is what dominated building many small Services)."""
        if not name.is_subdomain(self._zone):
            return
        for _ in range(len(name) - len(self._zone) - 1):
            name = name.parent()
            yield name
