"""Helpers for testing loadlab and for calibrating it: servers of known behaviour (capacity,
hostile HTTP and DNS, a real unbound), fakes for the engine, loopback ports, CPU pinning, and the
checks several test packages share.

Public so that users can check their own set-up the same way the test suite does. Bound by no
layering rule: it serves tests and bench, and nothing in loadlab's run imports it.
"""
