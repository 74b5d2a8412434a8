"""Tests of loadlab.metrics: recording, interval logs, timeline, window stats."""
