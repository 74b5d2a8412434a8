"""Node agents (kubelet, telemetry, pod DNS): behaviour as I/O-free flows that yield actions and
receive replies; may import ``loadlab.targets.base``, never the wire (aiohttp, sockets, other
``loadlab.targets``) or the sim."""
