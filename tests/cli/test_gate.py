"""``--gate``: the pre-rollout answer, one line and an exit code, from the sizes a sweep judged."""

from __future__ import annotations

import dataclasses

import pytest

from loadlab.analysis.slo import SloCheck, SloReport
from loadlab.errors import EXIT_INCONCLUSIVE, EXIT_OK, EXIT_SLO_FAILED
from loadlab.gate import sweep_gate
from loadlab.sweep_verdict import SizeVerdict
from tests.cli.test_sweep import verdict

MET = SloReport((SloCheck("kubelet/lease-get p99_ms", 1000.0, 12.0, True),))
MISSED = SloReport((SloCheck("dns lookup p99_ms", 100.0, 250.0, False),))


def held(nodes: int) -> SizeVerdict:
    return dataclasses.replace(verdict(nodes), slo=MET)


def test_a_cluster_that_holds_at_the_required_size_fits() -> None:
    gate = sweep_gate([held(250), held(1000), verdict(4000, api=30)], min_nodes=1000)
    assert gate.exit_code == EXIT_OK
    assert gate.line == (
        "gate: passed - fits 1,000 nodes (required 1,000): held at 1,000 nodes with 1 SLO met; "
        "saturates at 4,000 nodes"
    )


def test_saturation_at_or_below_the_required_size_fails_naming_the_size_and_the_check() -> None:
    gate = sweep_gate([held(250), verdict(1000, api=42)], min_nodes=1000)
    assert gate.exit_code == EXIT_SLO_FAILED
    assert gate.line.startswith(
        "gate: FAILED - 1,000 nodes (required 1,000): API saturated at 42 s"
    )
    assert "429" in gate.line


def test_a_missed_slo_fails_the_gate_though_nothing_saturated() -> None:
    slow_dns = dataclasses.replace(verdict(500), slo=MISSED)
    gate = sweep_gate([held(250), slow_dns], min_nodes=None)
    assert gate.exit_code == EXIT_SLO_FAILED
    assert "500 nodes: SLO missed: dns lookup p99 250 ms > 100 ms" in gate.line


def test_without_a_requirement_every_size_must_hold() -> None:
    assert sweep_gate([held(250), held(1000)], min_nodes=None).exit_code == EXIT_OK
    assert sweep_gate([held(250), verdict(1000, dns=60)], None).exit_code == EXIT_SLO_FAILED


@pytest.mark.parametrize(
    ("sizes", "needle"),
    [
        ([held(250), held(1000)], "above every size run (largest 1,000): add it with --sizes"),
        ([held(250), verdict(4000, limited=True)], "4,000 nodes was limited by the generator"),
        ([held(250), verdict(4000, complete=False)], "4,000 nodes was interrupted"),
        ([held(250), verdict(4000, api=10)], "4,000 nodes failed (API saturated at 10 s"),
        ([], "no size was run"),
    ],
)
def test_no_evidence_that_the_required_size_fits_is_inconclusive_never_a_pass(
    sizes: list[SizeVerdict], needle: str
) -> None:
    gate = sweep_gate(sizes, min_nodes=2000)
    assert gate.exit_code == EXIT_INCONCLUSIVE
    assert gate.line.startswith("gate: inconclusive - ")
    assert needle in gate.line


def test_a_generator_limited_small_size_does_not_fail_the_gate_of_a_larger_one_that_held() -> None:
    gate = sweep_gate([verdict(250, limited=True), held(1000)], min_nodes=1000)
    assert gate.exit_code == EXIT_OK
