"""Identities are names, never measured numbers (issue R1).

A calibrated threshold, a found size or a fitted rate moves with the machine's rounding and with
the trained network, so a statement id, case id or baseline key that held one would change on
another CPU or a GPU and the verdict baseline would report statements "missing" and "new" with the
same verdicts. Levels are named by what is configured (a target rate, a fixed threshold), and the
measured value goes into the statement's text and numbers.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from volbench.crosscheck.calibration import calibrate_local_scales, calibrate_thresholds

F64 = torch.float64
BASELINE = Path(__file__).resolve().parents[1] / "cases" / "baseline" / "smoke.json"


def ball(center: torch.Tensor, ulps: int = 0):
    """cost = |theta - c|^2, its values moved by ``ulps`` units in the last place (a pilot whose
    costs another kernel rounded differently)."""
    def cost(p):
        v = ((p - center.to(p)) ** 2).sum(dim=1)
        for _ in range(abs(ulps)):
            v = torch.nextafter(v, torch.full_like(v, torch.inf if ulps > 0 else -torch.inf))
        return v
    return cost


def test_a_perturbed_pilot_moves_the_calibrated_levels_but_not_their_names():
    c = torch.tensor([0.5, -0.5, 0.2], dtype=F64)
    kw = dict(prior_std=1.0, targets=(0.3, 0.03), n_pilot=3000, grid=8, dtype=F64)
    a = calibrate_thresholds(ball(c), c, **kw)
    b = calibrate_thresholds(ball(c, ulps=1), c, **kw)
    assert a.levels != b.levels, "the perturbation must reach the measured levels, or this test shows nothing"
    assert a.names == b.names == ("target-rate-0.3", "target-rate-0.03")
    kw = dict(threshold=1.0, shape_std=1.0, targets=(0.3,), n_pilot=2000, rtol=1e-10, dtype=F64)
    a = calibrate_local_scales(ball(c), c, **kw)
    b = calibrate_local_scales(ball(c, ulps=-1), c, **kw)
    assert a.levels != b.levels and a.names == b.names == ("target-rate-0.3",)


def test_another_thread_count_gives_the_same_names():
    """The same calibration on one and on two threads: the names agree whatever the levels do."""
    c = torch.tensor([0.5, -0.5, 0.2, 0.1], dtype=torch.float32)
    kw = dict(prior_std=1.0, targets=(0.3, 0.03), n_pilot=2000, grid=8, dtype=torch.float32)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = calibrate_thresholds(ball(c), c, **kw)
        torch.set_num_threads(2)
        two = calibrate_thresholds(ball(c), c, **kw)
    finally:
        torch.set_num_threads(threads)
    assert one.names == two.names


#: An id component that holds a number after "=" (``@tau=2.948``, ``@c=0.0197``): what a measured
#: value looks like when it is pasted into an id. Configured values are written ``tau-0.65``.
MEASURED_IN_ID = re.compile(r"=[-+]?\d")


def test_no_baseline_id_holds_a_number():
    cases = json.loads(BASELINE.read_text())["cases"]
    ids = {case_id for case_id in cases}
    ids |= {sid for per in cases.values() for entry in per.values() for sid in entry.get("statements", {})}
    bad = sorted(i for i in ids if MEASURED_IN_ID.search(i))
    assert not bad, f"ids that hold numbers (name the level instead): {bad}"
