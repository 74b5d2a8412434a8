"""Tests of the HTTP and DNS targets against real servers on loopback."""
