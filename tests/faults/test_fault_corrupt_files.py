"""Corrupt data files, store entries and measurement-cache files are detected, never used."""
from __future__ import annotations

import gzip
import json
import shutil
import warnings
from pathlib import Path

import pytest
import torch

from volbench import data as vdata
from volbench.store.minima import CorruptEntryWarning, MinimaStore

pytestmark = pytest.mark.faults

MNIST_10K = Path("/work/shared/data/mnist-10k")
LABELS = "t10k-labels-idx1-ubyte.gz"
IMAGES = "t10k-images-idx3-ubyte.gz"
needs_mnist = pytest.mark.skipif(not (MNIST_10K / LABELS).is_file(), reason="real MNIST 10k not present")


@pytest.fixture
def mnist_root(tmp_path, monkeypatch):
    """A private data root holding a copy of the MNIST 10k files, and no other root searched."""
    monkeypatch.setenv("VOLBENCH_DATA", str(tmp_path / "no-such-root"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = tmp_path / "data" / "mnist-10k"
    folder.mkdir(parents=True)
    for name in (LABELS, IMAGES):
        shutil.copy(MNIST_10K / name, folder / name)
    return tmp_path / "data", folder


@needs_mnist
def test_intact_copy_loads(mnist_root):
    root, _ = mnist_root
    ds = vdata.load("mnist", root=root, variant="10k")
    assert ds.n_train + ds.n_test == 10_000, "the intact 10k copy must load all 10,000 images"


@needs_mnist
def test_changed_label_is_a_checksum_error(mnist_root):
    """A valid gzip whose content differs by one byte: only the content checksum can catch it."""
    root, folder = mnist_root
    raw = bytearray(gzip.decompress((folder / LABELS).read_bytes()))
    raw[-1] = (raw[-1] + 1) % 10  # one label changed, header and length intact
    (folder / LABELS).write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(vdata.ChecksumError) as info:
        vdata.load("mnist", root=root, variant="10k")
    msg = str(info.value)
    assert LABELS.removesuffix(".gz") in msg and "expected" in msg and "fresh copy" in msg, (
        f"the checksum error must name the file, the expected sum and the fix; got: {msg}")


@needs_mnist
def test_truncated_gzip_names_the_file(mnist_root):
    root, folder = mnist_root
    data = (folder / IMAGES).read_bytes()
    (folder / IMAGES).write_bytes(data[: len(data) // 2])
    with pytest.raises((ValueError, OSError, EOFError)) as info:
        vdata.load("mnist", root=root, variant="10k")
    assert IMAGES.removesuffix(".gz") in str(info.value), f"the error must name the truncated file; got: {info.value!r}"


def test_missing_data_is_dataset_not_found(tmp_path, monkeypatch):
    monkeypatch.setenv("VOLBENCH_DATA", str(tmp_path / "nothing"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(vdata.DatasetNotFoundError) as info:
        vdata.load("mnist", root=tmp_path, variant="10k")
    assert str(tmp_path) in str(info.value), f"the message must list the folders searched; got: {info.value}"


@pytest.mark.parametrize("damage", ["flip_weight_byte", "truncate_weights", "garble_meta", "delete_meta"])
def test_corrupt_store_entry_is_a_miss_and_retrained(tmp_path, damage):
    store = MinimaStore(tmp_path)
    config = {"model": "toy", "seed": 0}
    good = {"params": torch.arange(16.0)}
    entry = store.get_or_train(config, lambda: (good, {"loss": 0.5}))
    weights, meta = entry.path / "weights.safetensors", entry.path / "meta.json"
    if damage == "flip_weight_byte":
        b = bytearray(weights.read_bytes())
        b[-3] ^= 0xFF  # inside the last float's bytes: safetensors itself would load it happily
        weights.write_bytes(bytes(b))
    elif damage == "truncate_weights":
        weights.write_bytes(weights.read_bytes()[:20])
    elif damage == "garble_meta":
        meta.write_text(meta.read_text()[:-10])
    else:
        meta.unlink()
    with pytest.warns(CorruptEntryWarning) as record:
        again = store.get_or_train(config, lambda: (good, {"loss": 0.5}))
    msg = str(record[0].message)
    assert entry.key[:12] in msg and "corrupt" in msg and "moved aside" in msg, f"unclear warning: {msg}"
    assert again.trained, "a corrupt entry must count as a miss and be retrained"
    assert torch.equal(again.params, good["params"]), "the retrained entry must hold the new tensors"
    assert len(list(tmp_path.glob(f"{entry.key}.corrupt-*"))) == 1, "the corrupt entry is kept aside for inspection"
    with warnings.catch_warnings():
        warnings.simplefilter("error", CorruptEntryWarning)
        assert store.get(entry.key) is not None, "the replacement entry verifies"


# ---------------------------------------------------------------- measurement cache (volbench.lab)
@pytest.fixture(scope="module")
def lab_setup(tmp_path_factory):
    from volbench.lab import MinimumSpec, measure, train_minimum
    from volbench.lab.train import TrainConfig

    store = MinimaStore(tmp_path_factory.mktemp("lab"))
    spec = MinimumSpec("swiss_roll", "swiss_mlp", train_size=40, seed=0, base=20,
                       train=TrainConfig(epochs=20, loss="bce", history_every=20))
    minimum = train_minimum(spec, store)

    def run():
        return measure(minimum, landscape_size=20, estimator="reference", n_directions=4, threshold=0.7,
                       store=store)

    first = run()
    (path,) = (Path(store.root) / "measurements").glob("*.json")
    return run, first, path


@pytest.mark.parametrize("damage", ["truncate", "not_json", "wrong_fields", "empty"])
def test_unreadable_measurement_cache_is_recomputed(lab_setup, damage):
    run, first, path = lab_setup
    good = path.read_text()
    try:
        bad = {"truncate": good[: len(good) // 2], "not_json": "\x00\x01garbage", "empty": "",
               "wrong_fields": json.dumps({"log_volume": 1.0})}[damage]
        path.write_text(bad)
        again = run()
        assert again.log_volume == first.log_volume and again.log_terms == first.log_terms, (
            "a recomputed measurement must equal the original exactly (same seeds, same data)")
        assert json.loads(path.read_text())["log_volume"] == first.log_volume, "the cache file is rewritten whole"
    finally:
        path.write_text(good)


def test_tampered_measurement_cache_is_detected(lab_setup):
    run, first, path = lab_setup
    good = path.read_text()
    try:
        record = json.loads(good)
        record["log_volume"] = record["log_volume"] + 1.0  # bit rot / hand edit that still parses
        path.write_text(json.dumps(record))
        with pytest.warns(UserWarning):
            again = run()
        assert again.log_volume == first.log_volume, "a tampered cache file must not be returned"
    finally:
        path.write_text(good)
