"""loadlab: find where a Kubernetes control plane saturates, and how it then fails.

Layers, arrows pointing down (README's Design section; tests/test_layering.py enforces the rules of
the packages): ``cli`` (arguments) -> ``launch`` (running a run: signals, the embedded sim, probes,
the summary) -> ``wiring`` (building it: targets, recorders, hlog files) -> ``session`` (its
phases and steps) -> ``engine`` (schedules and runners; knows no protocol), ``analysis`` (step
verdicts, ramp search, knee, findings: pure functions), ``metrics`` (recording, hlog, timeline:
pure data) -> ``targets`` (the wire). Beside them: ``profile``, ``shipped`` (the packaged
profiles), ``summary`` (summary.json), ``present`` (the printed verdict), ``progress`` (the live
display), ``results`` (the folder); under everything: ``clock``, ``errors``, ``runloop``.
``sim`` (the embedded control plane) is a separate program that imports none of the generator;
``testing`` holds servers of known behaviour and test helpers.
"""

__version__ = "0.1.0"
