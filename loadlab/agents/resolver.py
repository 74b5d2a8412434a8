"""A pod's stub resolver (glibc's ``getaddrinfo`` over ``res_nsearch``), as a sans-IO sub-flow.

``resolve`` is a generator a pod's flow runs with ``yield from``: it yields the ``DnsQuery``
actions a lookup puts on the wire and returns a ``LookupResult``. The node's ``NodeLocalCache``
is asked first, question by question; only what it cannot answer goes on the wire, and what comes
back is stored in it. No I/O, no clock: times come from the replies.

The rules, from glibc's ``resolv/res_query.c`` (``__res_context_search``, ``__res_context_query``)
and ``resolv/res_send.c`` (``send_dg``, ``__res_context_send``); docs/control-plane-model.md,
"The pod's resolver":

- **Order.** A name with at least ``ndots`` dots (Kubernetes writes ``ndots:5``) is tried as
  given first, then with each search suffix. A shorter name is tried with each suffix first, then
  as given. A name with a trailing dot is tried as given, and only that.
- **A and AAAA together.** Each name tried is one query pair sent on one socket (glibc's
  ``T_QUERY_A_AND_AAAA``, sent with ``sendmmsg``): here one ``DnsQuery`` with two questions.
  Any address in either answer ends the lookup with success.
- **Retries.** A try is repeated up to ``attempts`` times (glibc default 2) when it timed out
  (each try waits ``timeout_s``, default 5 s: resolv.conf(5)) and also, at once, when every answer
  was SERVFAIL or REFUSED (``send_dg`` treats those as "try the next server", and with one
  server that is the next try).
- **Walking the search list.** NXDOMAIN and NODATA move on to the next suffix; so does SERVFAIL
  (``got_servfail``: "try next search element, if any"). Anything else ends the search list: a
  timeout on every attempt, REFUSED, an unusable answer ("anything else implies that we're
  done"). The name as given is still tried afterwards if it has not been yet: glibc's
  "If the query has not already been tried as is then try it" follows the search loop however
  the loop ended. A refused connection (ECONNREFUSED) gives up at once.
- **What the application sees** when no name had an address (glibc's h_errno precedence): the
  verdict of the as-given try if it came first, else NODATA if any suffix had it, else SERVFAIL
  if any suffix had it, else the verdict of the last try.

Simplifications, on purpose:

- A try in which one answer came and the other timed out counts as timed out, unless the answer
  that came carried an address (glibc would resend the missing query in single-request mode).
- ``HOSTALIASES``, ``RES_ROTATE``, several nameservers and TCP fallback are not modelled.
- The node cache answering SERVFAIL when its own upstream times out is not modelled: a silent
  cluster DNS is a timeout for the pod.
"""

from __future__ import annotations

import enum
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

from loadlab.agents.base import Action, DnsAnswer, DnsQuery, DnsQuestion, DnsReplies, expect
from loadlab.agents.nodecache import NodeLocalCache
from loadlab.targets.base import Outcome

# docs/control-plane-model.md, "The pod's resolver": Kubernetes writes `options ndots:5`
# (kubelet pkg/kubelet/network/dns/dns.go); glibc defaults `timeout:5`, `attempts:2`
# (resolv.conf(5)).
NDOTS = 5
TIMEOUT_S = 5.0
ATTEMPTS = 2
ADDRESS_TYPES = ("A", "AAAA")
"""What ``getaddrinfo`` with AF_UNSPEC asks for each name."""
WIRE_OP = "dns-wire"
"""The metric name of each query the resolver puts on the wire."""

Lookup = Generator[Action, Any, "LookupResult"]


class Verdict(enum.Enum):
    """What one name (or a whole lookup) came to."""

    ADDRESS = "address"
    NXDOMAIN = "nxdomain"
    NODATA = "nodata"
    """NOERROR without an address: the name exists, with no A or AAAA."""
    SERVFAIL = "servfail"
    TIMEOUT = "timeout"
    REFUSED = "refused"
    MALFORMED = "malformed"
    CONN_REFUSED = "conn_refused"

    @property
    def outcome(self) -> Outcome:
        """The outcome a lookup with this verdict is recorded under."""
        return _OUTCOMES[self]


# NODATA is recorded as NXDOMAIN: either way the application gets no address (EAI_NONAME).
_OUTCOMES = {
    Verdict.ADDRESS: Outcome.OK,
    Verdict.NXDOMAIN: Outcome.NXDOMAIN,
    Verdict.NODATA: Outcome.NXDOMAIN,
    Verdict.SERVFAIL: Outcome.SERVFAIL,
    Verdict.TIMEOUT: Outcome.TIMEOUT,
    Verdict.REFUSED: Outcome.REFUSED,
    Verdict.MALFORMED: Outcome.MALFORMED,
    Verdict.CONN_REFUSED: Outcome.CONN_ERROR,
}
# Answers send_dg treats as "try the next server" (then the next try): SERVFAIL, REFUSED, and a
# socket error.
_NEXT_SERVER = frozenset({Outcome.SERVFAIL, Outcome.REFUSED, Outcome.CONN_ERROR})
# Nothing came back: a timeout, or a query the generator never sent (its backlog was full).
_NO_ANSWER = frozenset({Outcome.TIMEOUT, Outcome.OVERFLOW})
# Verdicts after which a name is not asked again: the server answered.
_FINAL = frozenset({Verdict.ADDRESS, Verdict.NXDOMAIN, Verdict.NODATA, Verdict.MALFORMED})
# Verdicts after which the search list goes on to the next suffix.
_CONTINUE = frozenset({Verdict.NXDOMAIN, Verdict.NODATA, Verdict.SERVFAIL})


@dataclass(frozen=True)
class NameTried:
    """One name the lookup asked for (a search candidate or the name as given)."""

    name: str
    """Absolute, with the trailing dot."""
    verdict: Verdict
    tries: int
    """Rounds of A+AAAA asked (from the cache or the wire), at most ``attempts``."""
    wire_queries: int
    cache_hits: int


@dataclass(frozen=True)
class LookupResult:
    """One ``getaddrinfo`` as the application saw it."""

    verdict: Verdict
    """``ADDRESS``, or the failure the application got (see the module docstring)."""
    addresses: tuple[str, ...]
    tried: tuple[NameTried, ...]
    """Every name asked for, in order."""
    wire_queries: int
    """``DnsQuery`` actions sent (each with one or two questions)."""
    wire_questions: int
    cache_hits: int
    """Questions the node cache answered."""
    started_ns: int
    finished_ns: int

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.ADDRESS

    @property
    def outcome(self) -> Outcome:
        return self.verdict.outcome

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tried)


def resolve(
    name: str,
    search: Sequence[str],
    *,
    now_ns: int,
    cache: NodeLocalCache | None = None,
    ndots: int = NDOTS,
    timeout_s: float = TIMEOUT_S,
    attempts: int = ATTEMPTS,
    op: str = WIRE_OP,
) -> Lookup:
    """Look ``name`` up as glibc would with ``search`` and ``options ndots:N timeout:T attempts:A``.

    ``now_ns`` is when the lookup starts (the flow's last reply told it); ``cache`` is the node's
    cache, None for a pod that asks the cluster DNS directly.
    """
    if attempts < 1 or ndots < 0 or timeout_s <= 0:
        raise ValueError("attempts must be >= 1, ndots >= 0 and timeout_s > 0")
    walk = _Walk(now_ns, cache, timeout_s, attempts, op)
    yield from walk.search(name, search, ndots)
    return walk.result()


class _Walk:
    """The state of one lookup: what was tried, what it cost, and the current time."""

    def __init__(
        self, now_ns: int, cache: NodeLocalCache | None, timeout_s: float, attempts: int, op: str
    ) -> None:
        self.started_ns = self.now_ns = now_ns
        self.cache = cache
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.op = op
        self.tried: list[NameTried] = []
        self.addresses: tuple[str, ...] = ()
        self.verdict = Verdict.NXDOMAIN  # glibc: HOST_NOT_FOUND "if we never query"
        self.wire_questions = 0

    def result(self) -> LookupResult:
        return LookupResult(
            verdict=self.verdict,
            addresses=self.addresses,
            tried=tuple(self.tried),
            wire_queries=sum(t.wire_queries for t in self.tried),
            wire_questions=self.wire_questions,
            cache_hits=sum(t.cache_hits for t in self.tried),
            started_ns=self.started_ns,
            finished_ns=self.now_ns,
        )

    def search(self, name: str, search: Sequence[str], ndots: int) -> Generator[Action, Any, None]:
        """``__res_context_search``: sets ``verdict`` (and ``addresses`` on success)."""
        trailing_dot = name.endswith(".")
        as_given = name if trailing_dot else name + "."
        bare = name.rstrip(".")
        saved: Verdict | None = None
        if name.count(".") >= ndots or trailing_dot:
            first = yield from self.ask(as_given)
            if first is Verdict.ADDRESS or trailing_dot:
                self.verdict = first
                return
            saved = first
        last, seen, root_on_list = yield from self.walk_suffixes(bare, search)
        if last in (Verdict.ADDRESS, Verdict.CONN_REFUSED):
            self.verdict = last
            return
        if saved is None and not root_on_list:
            last = yield from self.ask(as_given)
            if last is Verdict.ADDRESS:
                self.verdict = last
                return
        # glibc's h_errno after a failed search: saved_herrno, else NO_DATA, else TRY_AGAIN for
        # a SERVFAIL, else whatever the last query left.
        if saved is not None:
            self.verdict = saved
        elif Verdict.NODATA in seen:
            self.verdict = Verdict.NODATA
        elif Verdict.SERVFAIL in seen:
            self.verdict = Verdict.SERVFAIL
        elif last is not None:
            self.verdict = last

    def walk_suffixes(
        self, bare: str, search: Sequence[str]
    ) -> Generator[Action, Any, tuple[Verdict | None, set[Verdict], bool]]:
        """The search loop: the verdict that ended it (None if never run), the verdicts seen, and
        whether the root was on the list (then the name as given has been tried)."""
        verdict: Verdict | None = None
        seen: set[Verdict] = set()
        root_on_list = False
        for suffix in search:
            # glibc strips a leading dot; an empty suffix is the root: the name as given.
            domain = suffix.strip(".")
            root_on_list = root_on_list or not domain
            verdict = yield from self.ask(f"{bare}.{domain}." if domain else f"{bare}.")
            seen.add(verdict)
            if verdict not in _CONTINUE:
                break
        return verdict, seen, root_on_list

    def ask(self, qname: str) -> Generator[Action, Any, Verdict]:
        """A and AAAA for ``qname``, up to ``attempts`` tries; records a ``NameTried``."""
        verdict = Verdict.TIMEOUT
        tries = wire_queries = cache_hits = 0
        while tries < self.attempts:
            tries += 1
            answers, hits, sent = yield from self.one_try(qname)
            cache_hits += hits
            wire_queries += sent
            verdict = _classify(answers)
            if verdict is Verdict.ADDRESS:
                self.addresses = tuple(a for answer in answers for a in answer.addresses)
            if verdict in _FINAL:
                break
        self.tried.append(NameTried(qname, verdict, tries, wire_queries, cache_hits))
        return verdict

    def one_try(self, qname: str) -> Generator[Action, Any, tuple[list[DnsAnswer], int, int]]:
        """One round of A+AAAA: the answers (in ``ADDRESS_TYPES`` order), the cache hits, and the
        wire queries sent (0 or 1)."""
        answers: dict[str, DnsAnswer] = {}
        if self.cache is not None:
            for rdtype in ADDRESS_TYPES:
                cached = self.cache.lookup(qname, rdtype, self.now_ns)
                if cached is not None:
                    answers[rdtype] = cached.answer
        hits = len(answers)
        missing = [t for t in ADDRESS_TYPES if t not in answers]
        if missing:
            questions = tuple(DnsQuestion(qname, t) for t in missing)
            reply = expect((yield DnsQuery(self.op, questions, self.timeout_s)), DnsReplies)
            self.now_ns = reply.now_ns
            self.wire_questions += len(questions)
            for rdtype, answer in zip(missing, reply.answers, strict=True):
                answers[rdtype] = answer
                if self.cache is not None:
                    self.cache.store(qname, rdtype, answer, reply.now_ns)
        return [answers[t] for t in ADDRESS_TYPES], hits, 1 if missing else 0


def _classify(answers: Sequence[DnsAnswer]) -> Verdict:
    """What one try of A+AAAA came to (``__res_context_query`` over ``send_dg``'s answers)."""
    if any(a.outcome is Outcome.OK and a.addresses for a in answers):
        return Verdict.ADDRESS
    if any(a.outcome in _NO_ANSWER for a in answers):
        return Verdict.TIMEOUT
    answered = [a.outcome for a in answers if a.outcome not in _NEXT_SERVER]
    if not answered:
        # Every answer said "try the next server"; glibc reports the SERVFAIL if there was one.
        outcomes = {a.outcome for a in answers}
        if Outcome.SERVFAIL in outcomes:
            return Verdict.SERVFAIL
        return Verdict.REFUSED if Outcome.REFUSED in outcomes else Verdict.CONN_REFUSED
    # The other answer decides (glibc reads the second buffer when the first was a SERVFAIL).
    if Outcome.NXDOMAIN in answered:
        return Verdict.NXDOMAIN
    if all(o is Outcome.OK for o in answered):
        return Verdict.NODATA
    return Verdict.MALFORMED
