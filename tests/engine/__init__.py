"""Tests of the load engine: schedules, op mix, runners, self-measurement."""
