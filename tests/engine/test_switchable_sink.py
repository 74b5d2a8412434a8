"""``SwitchableSink``: completions reach whichever sink a phase sets, called or followed."""

from __future__ import annotations

from loadlab.metrics.recorder import Recorder
from loadlab.session import SwitchableSink
from loadlab.targets.base import CompleteFn, Outcome


def test_a_following_target_is_handed_each_sink_directly_and_its_completions_land_there() -> None:
    first, second = Recorder("api", ["get"], start_ns=0), Recorder("api", ["get"], start_ns=0)
    sink = SwitchableSink(first)
    bound: list[CompleteFn] = []
    sink.follow(bound.append)
    bound[-1](0, Outcome.OK, 0, 0, 1_000)
    sink.to = second  # a closed loop starts, or ends
    bound[-1](0, Outcome.OK, 0, 0, 2_000)
    sink.complete(0, Outcome.OK, 0, 0, 3_000)  # a target that calls, not follows
    assert len(bound) == 2
    assert [first.rotate(10_000).completed, second.rotate(10_000).completed] == [1, 2]
