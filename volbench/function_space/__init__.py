"""volbench.function_space."""
