"""The landscape lab: trained minima in nested data landscapes, measured once and reused.

Modules: ``spec`` (how a minimum is made, its training data and landscapes), ``minima``
(``train_minimum``), ``measure`` (``measure``, ``measure_many``, ``Measurement``), ``ledger`` (what
this process computed or served), ``train`` (the training loop and recipes), ``models`` (the papers'
architectures). Trained minima and measurement records live in the store (``volbench.store``).

The main paper's experiments (Fan et al., Sec. 4-5) all have one shape: a data set, nested
training subsets (a base set plus prefixes of one shuffled pool; data seed = model seed + 10),
minima trained on some of them (optionally with poisoned or class-imbalanced extras, another
optimiser or batch size), and each minimum's basin volume measured in the loss landscape of some
subset, with the same directions for every minimum. This module turns that into three calls:

    spec = MinimumSpec("mnist", "mnist_mlp", train_size=600, seed=0, base=60, train=recipe)
    minimum = train_minimum(spec, store)                       # cached in the MinimaStore
    m = measure(minimum, landscape_size=60, estimator="reference", n_directions=50,
                threshold=0.1, store=store)                   # cached as JSON beside it

``measure`` returns a ``Measurement`` with the log-volume, per-direction log-terms (for bootstrap
intervals) and log-radii (for histograms). A minimum whose own cost in the landscape is not below
the threshold has left the basin: its volume is zero (log-volume -inf, ``outside=True``), as in
the paper's Fig. 10 (right), rather than an error.

Example (tiny and fast: the swiss roll):
    >>> import tempfile
    >>> from volbench.store.minima import MinimaStore
    >>> from volbench.lab.train import TrainConfig
    >>> store = MinimaStore(tempfile.mkdtemp())
    >>> spec = MinimumSpec("swiss_roll", "swiss_mlp", train_size=40, seed=0, base=20,
    ...                    train=TrainConfig(epochs=300, loss="bce"))
    >>> m = measure(train_minimum(spec, store), landscape_size=20, estimator="reference",
    ...             n_directions=8, threshold=0.1, store=store)
    >>> m.estimator, len(m.log_terms)
    ('reference', 8)
"""
from volbench.lab.ledger import LEDGER, Ledger
from volbench.lab.measure import Measurement, measure, measure_many
from volbench.lab.minima import Minimum, check_compatible, prefetch_minima, train_minimum
from volbench.lab.spec import (
    LAB_VERSION,
    MinimumSpec,
    forget_datasets,
    landscape_batch,
    load_dataset,
    training_batch,
)
from volbench.store.measurements import CacheWriteWarning, CorruptCacheWarning

__all__ = ["MinimumSpec", "Minimum", "Measurement", "CacheWriteWarning", "CorruptCacheWarning", "load_dataset",
           "forget_datasets", "training_batch", "landscape_batch", "check_compatible", "train_minimum",
           "prefetch_minima", "measure", "measure_many", "Ledger", "LEDGER", "LAB_VERSION"]
