"""Helpers for testing loadlab and for calibrating it: servers of known behaviour.

Public so that users can check their own set-up the same way the test suite does.
"""
