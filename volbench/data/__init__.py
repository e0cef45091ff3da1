"""volbench's data layer: real and generated data sets as ``Dataset`` records, and helpers to
build the papers' training sets (nested subsets, poisoned / imbalanced extras, attack sets).

    >>> from volbench.data import load, names, nested_subsets, data_seed_for
    >>> names()[:3]
    ['mnist', 'fashion_mnist', 'cifar10']
    >>> ds = load("boolean", function="parity")
    >>> ds.n_train, ds.input_shape, ds.variant
    (128, (7,), 'boolean-7-parity')

Real data is looked up in the ``root`` argument, then ``$VOLBENCH_DATA``, then the user cache
(see ``volbench.data.roots``); ``ds.describe()`` gives the variant, seed and checksums for reports.
"""
from volbench.data.dataset import ChecksumError, Dataset, DatasetNotFoundError
from volbench.data.download import download_file
from volbench.data.images import ten_k_split
from volbench.data.registry import load, names, options
from volbench.data.roots import ENV_VAR, data_roots, user_cache_dir
from volbench.data.subsets import (
    Batch,
    Extras,
    NestedSubsets,
    attack_set,
    data_seed_for,
    imbalanced_extras,
    nested_subsets,
    poisoned_extras,
    take,
)

__all__ = [
    "Dataset", "DatasetNotFoundError", "ChecksumError",
    "names", "load", "options",
    "nested_subsets", "poisoned_extras", "imbalanced_extras", "attack_set", "take", "data_seed_for",
    "NestedSubsets", "Extras", "Batch",
    "data_roots", "user_cache_dir", "ENV_VAR", "download_file", "ten_k_split",
]
