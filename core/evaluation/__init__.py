"""How well and how fast the engine identifies: the evaluation protocol, its metrics and the benchmark."""
