"""Tests of the public testing kit (loadlab.testing) against real clients on loopback."""
