"""For demos, tests and benchmarks, never for the service: the demo, its sample data and the
stand-in servers, plugged into the `pushsvc` command (commands.py)."""
