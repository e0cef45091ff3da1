"""E4/E5 rules on constructed measurements: the claim false (fail), true (pass), ambiguous
(inconclusive), and the rule's edges."""
import math

import pytest

from volbench.claims.crosscheck import (E4_TOLERANCE, E5_TOLERANCE, e4_agreement, e4_parting, e5_against_estimate,
                                        e5_against_truth, equivalence)


def test_equivalence_needs_the_whole_interval_inside_to_pass():
    tol = 0.2
    assert equivalence(-0.19, 0.19, tol) == "pass"
    assert equivalence(-0.5, 0.5, tol) == "inconclusive"  # contains 0, but too wide: never a pass
    assert equivalence(0.21, 0.3, tol) == "fail"
    assert equivalence(-3.0, -0.21, tol) == "fail"
    assert equivalence(math.nan, 0.1, tol) == "inconclusive"
    assert equivalence(-math.inf, -1.0, tol) == "fail"
    with pytest.raises(ValueError):
        equivalence(0.1, -0.1, tol)


@pytest.mark.parametrize("estimate, sampled, verdict", [
    ((-2.00, -2.08, -1.95), (-2.01, -2.05, -1.97), "pass"),          # true: agree to a few percent
    ((-4.59, -5.60, -4.10), (-2.21, -2.23, -2.19), "fail"),          # false: isotropic 2.4 nats low
    ((-2.30, -2.80, -1.90), (-2.21, -2.23, -2.19), "inconclusive"),  # ambiguous: too few rays to tell
])
def test_e4_three_versions(estimate, sampled, verdict):
    st = e4_agreement("a", "agrees", estimate=estimate, sampled=sampled)
    assert st.verdict == verdict
    assert st.statistic.low == pytest.approx(estimate[1] - sampled[2])
    assert st.statistic.high == pytest.approx(estimate[2] - sampled[1])


def test_e4_difference_just_beyond_tolerance_fails_and_just_inside_passes():
    s = (-2.0, -2.0, -2.0)
    assert e4_agreement("a", "t", estimate=(-2.0 + E4_TOLERANCE * 1.01,) * 3, sampled=s).verdict == "fail"
    assert e4_agreement("a", "t", estimate=(-2.0 + E4_TOLERANCE * 0.99,) * 3, sampled=s).verdict == "pass"


def test_e4_rejects_inconsistent_triples():
    with pytest.raises(ValueError):
        e4_agreement("a", "t", estimate=(-1.0, -0.5, -2.0), sampled=(-1.0, -1.1, -0.9))


def test_e4_parting_names_the_first_failed_level():
    sts = [e4_agreement("a", "t", estimate=e, sampled=(-2.0, -2.01, -1.99))
           for e in ((-2.0, -2.05, -1.95), (-2.1, -2.3, -1.5), (-4.0, -4.5, -3.5), (-9.0, -9.5, -8.0))]
    out = e4_parting([1.0, 0.5, 0.2, 0.1], sts)
    assert out["verdicts"] == ["pass", "inconclusive", "fail", "fail"]
    assert out["parts_at"] == 0.2 and out["difference_there"] == pytest.approx(-2.0)


@pytest.mark.parametrize("fit, lam, verdict", [
    ((5.0, 4.98, 5.02), 5.0, "pass"),       # true: a regular quadratic, n/2
    ((2.0, 1.99, 2.01), 1.5, "fail"),       # false: n/2 where lambda = 3/2
    ((1.6, 1.2, 2.1), 1.5, "inconclusive"),  # ambiguous: interval too wide
])
def test_e5_truth_three_versions(fit, lam, verdict):
    assert e5_against_truth("a", "t", fit=fit, true_lambda=lam).verdict == verdict


def test_e5_truth_edges():
    assert e5_against_truth("a", "t", fit=(1.0 * math.exp(E5_TOLERANCE * 1.01),) * 3, true_lambda=1.0).verdict == "fail"
    assert e5_against_truth("a", "t", fit=(1.0 * math.exp(E5_TOLERANCE * 0.99),) * 3, true_lambda=1.0).verdict == "pass"
    # a slope interval reaching 0 cannot pass
    assert e5_against_truth("a", "t", fit=(0.5, -0.1, 1.05), true_lambda=1.0).verdict == "inconclusive"
    with pytest.raises(ValueError):
        e5_against_truth("a", "t", fit=(1.0, 0.9, 1.1), true_lambda=0.0)


@pytest.mark.parametrize("ours, theirs, verdict", [
    ((10.0, 9.8, 10.2), (10.1, 9.9, 10.3), "pass"),
    ((2400.0, 2390.0, 2410.0), (60.0, 40.0, 80.0), "fail"),
    ((10.0, 9.0, 11.0), (10.0, 5.0, 15.0), "inconclusive"),
    ((10.0, 9.0, 11.0), (3.0, -2.0, 8.0), "fail"),          # ours far above theirs' whole interval
    ((1.0, 0.9, 1.1), (3.0, -2.0, 8.0), "inconclusive"),    # theirs reaches below 0: log-ratio unbounded
])
def test_e5_estimate_versions(ours, theirs, verdict):
    assert e5_against_estimate("c", "t", fit=ours, other=theirs).verdict == verdict
