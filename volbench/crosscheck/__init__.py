"""volbench.crosscheck."""
