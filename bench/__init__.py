"""Side-by-side benchmarks: every figure is ours vs a named peer, measured in one run."""
