"""Tests of loadlab.analysis: step verdicts, ramp search, knee, SLOs."""
