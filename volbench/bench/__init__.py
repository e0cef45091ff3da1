"""volbench.bench."""
