"""Behaviour of simulated node agents (kubelet, telemetry DaemonSet, pod DNS). No I/O here."""
