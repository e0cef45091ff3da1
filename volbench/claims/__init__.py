"""The claims' decision rules as pure functions: measurements in, sub-verdicts out.

One module per paper (``fan``, ``scherlis``, ``zhang``) plus ``estimator`` for the E claims; the
shared vocabulary (statements, interval decisions, paired comparisons with the estimators'
resolution) lives in ``core`` and ``stats``, and ``contrast`` adds the one-network paired
contrasts and the "every comparison" decision the S claims use for either kind. ``cases/`` holds
only data and plumbing: it trains and measures, then hands numbers to a rule here, so every rule
is tested on constructed inputs where the claim is false, true and ambiguous
(``tests/test_claims_*.py``).
"""
