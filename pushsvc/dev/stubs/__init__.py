"""Stand-ins for the outside services pushsvc talks to: real servers for demos, tests and benchmarks."""
