"""E4/E5 rules on constructed measurements: the claim false (fail), true (pass), ambiguous
(inconclusive), and the rule's edges."""
import math

import pytest

from volbench.claims.crosscheck import (
    E4_TOLERANCE,
    E5_TOLERANCE,
    e4_agreement,
    e4_exit_rule,
    e4_lower_bounds,
    e4_parting,
    e4_same_law,
    e5_against_estimate,
    e5_against_truth,
    equivalence,
    scale_to_decide,
)


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


# ----------------------------------------------------------------------------- informative range, power, exit rule

def test_e4_measure_near_one_or_tiny_is_reported_not_counted():
    """A sampled rate above 0.5 (every ray nearly inside: agreement by construction) or below
    1e-4 is "not-judged", with its statistic kept; inside the range the same numbers are judged."""
    near_one = e4_agreement("a", "t", estimate=(-0.001, -0.002, 0.0), sampled=(-0.0005, -0.001, 0.0))
    assert near_one.verdict == "not-judged" and "true by construction" in near_one.reason
    assert near_one.statistic is not None and "'pass'" in near_one.reason
    tiny = e4_agreement("a", "t", estimate=(-12.0, -12.1, -11.9), sampled=(-12.0, -12.05, -11.95))
    assert tiny.verdict == "not-judged"
    inside = e4_agreement("a", "t", estimate=(-2.0, -2.05, -1.95), sampled=(-2.0, -2.05, -1.95))
    assert inside.verdict == "pass" and inside.numbers["sampled_rate"] == pytest.approx(math.exp(-2.0))
    with pytest.raises(ValueError, match="informative"):
        e4_agreement("a", "t", estimate=(-2.0, -2.1, -1.9), sampled=(-2.0, -2.1, -1.9), informative=(0.5, 0.1))


@pytest.mark.parametrize("point, low, high", [(0.0, -0.3, 0.3), (0.1, -0.2, 0.5), (-0.5, -0.8, -0.1),
                                               (0.4, -0.1, 0.9), (-0.15, -0.6, 0.2)])
def test_scale_to_decide_is_the_factor_that_decides(point, low, high):
    """Shrinking the half-widths by 1/sqrt(m) decides the statement at m (just above it) and not
    just below it: the factor is exact under the stated scaling."""
    tol = E4_TOLERANCE
    assert equivalence(low, high, tol) == "inconclusive"
    m = scale_to_decide(point, low, high, tol)
    assert 1.0 < m < math.inf

    def shrunk(f):
        k = 1 / math.sqrt(f)
        return equivalence(point - (point - low) * k, point + (high - point) * k, tol)

    assert shrunk(m * 1.001) != "inconclusive" and shrunk(m * 0.999) == "inconclusive"
    assert scale_to_decide(0.0, -0.1, 0.1, tol) == 1.0                 # already decided
    assert scale_to_decide(tol, tol - 0.3, tol + 0.3, tol) == math.inf  # on the edge: no sample size decides


def test_e4_inconclusive_reason_states_the_draws_that_would_decide():
    st = e4_agreement("a", "t", estimate=(-2.30, -2.80, -1.90), sampled=(-2.21, -2.23, -2.19))
    assert st.verdict == "inconclusive" and "x the draws and rays would decide it" in st.reason
    assert st.numbers["scale_to_decide"] > 1


@pytest.mark.parametrize("k, m, verdict", [
    (4000, 10, "pass"),          # true: the rule misses 0.25% of exits (log ratio 0.0025)
    (500, 290, "fail"),          # false: more than half the accepted segments leave the basin (0.87 nats)
    (40, 8, "inconclusive"),     # ambiguous: 20% missed on 40 accepts, interval straddles log 1.25
])
def test_e4_exit_rule_three_versions(k, m, verdict):
    st = e4_exit_rule("x", "t", n_accepted=k, n_missed=m, grid=64)
    assert st.verdict == verdict
    assert st.statistic.value == pytest.approx(-math.log(1 - m / k))
    with pytest.raises(ValueError):
        e4_exit_rule("x", "t", n_accepted=10, n_missed=11, grid=64)


def test_e4_same_law_and_lower_bounds_are_reported_only():
    assert e4_same_law("s", "t").verdict == "not-judged"
    st = e4_lower_bounds("lb", "t", estimates={"prior": (-900.0, -910.0, -890.0), "isotropic": (-850.0, -860.0, -845.0),
                                               "Adam": (-200.0, -230.0, -190.0)},
                         differences={"Adam": (-700.0, -720.0, -680.0), "isotropic": (-50.0, -60.0, -40.0)})
    assert st.verdict == "not-judged" and list(st.numbers["ranking"]) == ["Adam", "isotropic", "prior"]
    assert st.statistic.value == -700.0  # against the highest other estimator
    with pytest.raises(ValueError, match="reference"):
        e4_lower_bounds("lb", "t", estimates={"isotropic": (-1.0, -2.0, 0.0)})
