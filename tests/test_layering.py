"""The import rules of README's Design section, checked over every module under ``loadlab/``.

Arrows point down: the engine knows no protocol, analysis and metrics are pure data, the sim is a
separate program that imports none of the generator, and inside the sim each room builds only on
the rooms below it. The rules live in one table (``RULES``); the checker reads each module with
``ast`` (nothing is imported or run), so an import inside a function or under ``TYPE_CHECKING``
counts as much as one at the top.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC_ROOT = Path(__file__).resolve().parent.parent
"""The folder that holds the ``loadlab`` package."""

SHARED = ("loadlab.clock", "loadlab.errors", "loadlab.runloop")
"""Modules every layer may use: the injected clock, the errors a user can see, and the one way to
start an event loop."""


@dataclass(frozen=True)
class Rule:
    """What the modules of one layer may not import."""

    layer: str
    """The module or package bound by the rule (it and everything under it)."""
    forbidden: tuple[str, ...]
    """Modules it may not import, nor anything under them..."""
    allowed: tuple[str, ...]
    """...except these (and anything under them)."""
    why: str
    """The design reason, printed with every violation."""


SIM_ROOMS = ("loadlab.sim.k8s", "loadlab.sim.storage", "loadlab.sim.overload")
NO_WIRE = ("aiohttp", "dns", "socket", "ssl")
"""Protocol and socket libraries (``dns`` is dnspython)."""

RULES: tuple[Rule, ...] = (
    # The shared bottom: every layer may use these, so they use nothing of loadlab.
    Rule("loadlab.clock", ("loadlab",), ("loadlab.clock",), "the clock is shared by every layer"),
    Rule("loadlab.errors", ("loadlab",), ("loadlab.errors",), "errors are shared by every layer"),
    # The generator, top to bottom.
    Rule(
        "loadlab.engine",
        ("loadlab", *NO_WIRE),
        (
            "loadlab.engine",
            "loadlab.targets.base",
            "loadlab.metrics",
            "loadlab.agents",
            *SHARED,
        ),
        "the engine knows no protocol: it hands operations to a loadlab.targets.base.Target and "
        "drives agents (behaviour without I/O) through transport protocols",
    ),
    Rule(
        "loadlab.targets",
        ("loadlab",),
        ("loadlab.targets", "loadlab.agents.base", *SHARED),
        "the wire sits below everything of the generator (agents.base: the data an agent's "
        "transport carries, no behaviour)",
    ),
    Rule(
        "loadlab.metrics",
        ("loadlab", *NO_WIRE),
        ("loadlab.metrics", "loadlab.targets.base", *SHARED),
        "metrics are pure data (targets.base only for Outcome)",
    ),
    Rule(
        # The package docstring would also allow loadlab.targets.base; no module needs it, so
        # the rule that holds today is stricter.
        "loadlab.analysis",
        ("loadlab", *NO_WIRE, "asyncio"),
        ("loadlab.analysis", "loadlab.metrics", *SHARED),
        "analysis is pure functions over metrics: no wire, no engine, no event loop",
    ),
    Rule(
        "loadlab.report",
        (
            "loadlab.engine",
            "loadlab.targets",
            "loadlab.sim",
            "loadlab.session",
            "loadlab.launch",
            "loadlab.cli",
            *NO_WIRE,
        ),
        (),
        "a report reads results and never runs load",
    ),
    Rule(
        "loadlab.agents",
        ("aiohttp", "socket", "ssl", "loadlab.targets", "loadlab.sim"),
        ("loadlab.targets.base",),
        "agents are behaviour without I/O: they yield requests, a transport sends them",
    ),
    # The sim: a separate program, and rooms that build on the ones below.
    Rule(
        "loadlab.sim",
        ("loadlab",),
        ("loadlab.sim", *SHARED),
        "the sim is a separate program and imports none of the generator",
    ),
    Rule(
        "loadlab.sim.k8s",
        ("loadlab", *NO_WIRE),
        ("loadlab.sim.k8s",),
        "Kubernetes objects are plain data every other room builds on",
    ),
    Rule(
        "loadlab.sim.storage",
        ("loadlab", *NO_WIRE),
        ("loadlab.sim.storage", "loadlab.sim.k8s"),
        "the store knows nothing of HTTP, APF or DNS",
    ),
    Rule(
        "loadlab.sim.overload",
        ("loadlab", *NO_WIRE),
        ("loadlab.sim.overload", "loadlab.sim.k8s", "loadlab.sim.promtext", "loadlab.clock"),
        "the overload model is arithmetic over requests, not a server",
    ),
    Rule(
        "loadlab.sim.dns",
        ("loadlab",),
        ("loadlab.sim.dns", "loadlab.sim.k8s", "loadlab.sim.promtext", "loadlab.clock"),
        "the cluster DNS learns objects by watching the API over HTTP, as CoreDNS does",
    ),
    Rule(
        "loadlab.sim.apiserver",
        ("loadlab",),
        (
            "loadlab.sim.apiserver",
            *SIM_ROOMS,
            "loadlab.sim.promtext",
            "loadlab.sim.config",
            *SHARED,
        ),
        "the API server is the HTTP face of the rooms below it, and knows no DNS",
    ),
    Rule(
        "loadlab.sim.controllers",
        ("loadlab",),
        (
            "loadlab.sim.controllers",
            *SIM_ROOMS,
            "loadlab.sim.promtext",
            "loadlab.sim.config",
            *SHARED,
        ),
        "the controllers are clients of the store, beside the API server, not behind it",
    ),
)


@dataclass(frozen=True)
class Violation:
    """One import that breaks a rule."""

    path: Path
    line: int
    imported: str
    """The dotted name reached: ``from a.b import c`` reaches ``a.b.c``."""
    rule: Rule

    def __str__(self) -> str:
        return (
            f"{self.path}:{self.line} imports {self.imported}, which {self.rule.layer} may not "
            f"({self.rule.why})"
        )


def under(name: str, prefix: str) -> bool:
    """Whether ``name`` is the module ``prefix`` or lies under it (``a.b`` is under ``a``)."""
    return name == prefix or name.startswith(prefix + ".")


def forbids(rule: Rule, name: str) -> bool:
    return any(under(name, f) for f in rule.forbidden) and not any(
        under(name, a) for a in rule.allowed
    )


def module_name(path: Path, src_root: Path) -> str:
    parts = path.relative_to(src_root).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_names(path: Path, module: str) -> Iterator[tuple[int, str]]:
    """Every dotted name ``module`` (the file at ``path``) imports, with its line.

    ``from a.b import c`` yields ``a.b.c``: whether ``c`` is a module or a name re-exported by
    ``a.b``, the import reaches into ``a.b``, so a rule about ``a.b`` or ``a.b.c`` must see it.
    """
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            for alias in node.names:
                yield node.lineno, source if alias.name == "*" else f"{source}.{alias.name}"


def find_violations(src_root: Path, rules: Sequence[Rule]) -> list[Violation]:
    """Every import in the ``loadlab`` package under ``src_root`` that breaks one of ``rules``."""
    found: list[Violation] = []
    for path in sorted((src_root / "loadlab").rglob("*.py")):
        module = module_name(path, src_root)
        # The innermost layer first, so an import two rules forbid is reported once, by the
        # rule that says the most about this module.
        bound = sorted(
            (rule for rule in rules if under(module, rule.layer)),
            key=lambda rule: len(rule.layer),
            reverse=True,
        )
        for line, name in imported_names(path, module):
            broken = next((rule for rule in bound if forbids(rule, name)), None)
            if broken is not None:
                found.append(Violation(path.relative_to(src_root), line, name, broken))
    return found


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.layer)
def test_layer_imports_only_what_its_rule_allows(rule: Rule) -> None:
    violations = find_violations(SRC_ROOT, [rule])
    assert not violations, "\n".join(str(v) for v in violations)


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.layer)
def test_every_rule_binds_an_existing_module(rule: Rule) -> None:
    # A misspelt layer would bind nothing and pass forever.
    path = SRC_ROOT.joinpath(*rule.layer.split("."))
    assert (path / "__init__.py").is_file() or path.with_suffix(".py").is_file(), rule.layer


def write_module(src_root: Path, relative: str, text: str) -> None:
    path = src_root / "loadlab" / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@pytest.mark.parametrize(
    ("relative", "text", "imported"),
    [
        pytest.param(
            "engine/bad.py",
            "from loadlab.sim.k8s.objects import PODS\n",
            "loadlab.sim.k8s.objects.PODS",
            id="engine-imports-the-sim",
        ),
        pytest.param(
            "engine/lazy.py",
            "def knee() -> None:\n    import loadlab.analysis.knee\n",
            "loadlab.analysis.knee",
            id="engine-imports-analysis-inside-a-function",
        ),
        pytest.param(
            "engine/wire.py",
            "from loadlab.targets.http import HttpTarget\n",
            "loadlab.targets.http.HttpTarget",
            id="engine-imports-a-wire-module",
        ),
        pytest.param(
            "analysis/bad.py",
            "from loadlab.targets import base\n",
            "loadlab.targets.base",
            id="analysis-imports-targets",
        ),
        pytest.param(
            "sim/storage/bad.py",
            "from ...engine import runner\n",
            "loadlab.engine.runner",
            id="sim-imports-the-engine-relatively",
        ),
        pytest.param(
            "agents/kubelet.py",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import aiohttp\n",
            "aiohttp",
            id="agents-import-aiohttp-for-typing",
        ),
    ],
)
def test_checker_reports_a_forbidden_import(
    tmp_path: Path, relative: str, text: str, imported: str
) -> None:
    write_module(tmp_path, relative, text)
    violations = find_violations(tmp_path, RULES)
    assert [v.imported for v in violations] == [imported]
    assert str(violations[0]).startswith(f"loadlab/{relative}:")


def test_checker_reports_the_sim_dns_reaching_into_the_store(tmp_path: Path) -> None:
    write_module(tmp_path, "sim/dns/bad.py", "from loadlab.sim.storage.store import Store\n")
    violations = find_violations(tmp_path, RULES)
    # Both the whole sim's rule (storage is inside the sim) and the DNS room's rule apply; only
    # the room's forbids it.
    assert [(v.line, v.rule.layer) for v in violations] == [(1, "loadlab.sim.dns")]


def test_checker_accepts_the_stated_exceptions(tmp_path: Path) -> None:
    write_module(
        tmp_path,
        "engine/good.py",
        "from loadlab import clock\nfrom loadlab.targets.base import Outcome\nimport asyncio\n",
    )
    write_module(tmp_path, "sim/apiserver/good.py", "from ..storage import store\n")
    assert find_violations(tmp_path, RULES) == []
