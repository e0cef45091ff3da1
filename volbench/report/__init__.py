"""Reports of benchmark runs: result records, the pytest plugin, renderers and the CLI's helpers.

Importing this package costs only the standard library: the schema is plain dataclasses, and
matplotlib, jinja2 and torch are imported by the functions that need them.

Modules:
    schema        CaseResult, Statistic, RunReport (results.json), SCHEMA_VERSION
    files         atomic writes, run ids, the ``latest`` pointer, load_run / resolve_run
    plugin        the pytest plugin (``record_case`` fixture, results.json, terminal summary)
    render        render_run: report.md + figures/*.png + self-contained index.html
    plots         one matplotlib figure per series kind, and the timing plot
    envinfo       collect_environment(): versions, devices, TF32 settings, git commit
    machine       machine_class(): the class (CPU vendor, ISA, threads, device, …) a verdict is judged on
    baseline      the verdict baseline: load, compare (class-aware), update
    bench         pytest-benchmark helpers (GPU-synchronising timer, machine info)
    example       example_run(): a synthetic run with every plot kind

Example:
    >>> from volbench.report import CaseResult, Statistic
    >>> CaseResult(claim="F12", case_id="F12-toy", estimator="principled", verdict="pass",
    ...            statistic=Statistic("max |error|", 1e-5), rule="pass if < 1e-3").verdict
    'pass'
"""
from volbench.results import SCHEMA_VERSION, CaseResult, RunReport, SchemaError, Statistic

__all__ = ["SCHEMA_VERSION", "CaseResult", "RunReport", "SchemaError", "Statistic"]
