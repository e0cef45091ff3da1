"""Speed: what the benchmarks measure and how machines are compared.

Modules: ``timer`` (pytest-benchmark integration: a GPU-synchronising timer, machine info),
``flops`` (FLOP counts, device peaks, TF32 and peak memory), ``records`` (reading
pytest-benchmark JSON), ``significance`` (asv's rule for a time ratio: Mann-Whitney U, else
non-overlap of 99% intervals), ``compare`` (rows across machines) and ``render`` (tables, chart,
Markdown and HTML). ``volbench bench compare A.json B.json`` is the command; the benchmarks
themselves live in the repository's ``benchmarks/``.
"""
