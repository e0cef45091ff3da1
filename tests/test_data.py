"""Tests for volbench.data: loaders, data roots, checksums, downloads and subset helpers.

Real data: the MNIST t10k pair shipped in /work/shared/data (CI) and Debian's Fashion-MNIST in
/usr/share/datasets/fashion-mnist; CIFAR-10 and SVHN are checked on tiny fake files written in
their real formats. Downloads only ever hit a server on 127.0.0.1 or file:// URLs.
"""
from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import http.server
import json
import math
import os
import pickle
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import gamma, requires_cuda, unit_roundoff
from hypothesis import given
from hypothesis import strategies as st

from volbench.data import (
    ChecksumError,
    Dataset,
    DatasetNotFoundError,
    attack_set,
    data_roots,
    data_seed_for,
    download_file,
    imbalanced_extras,
    load,
    names,
    nested_subsets,
    poisoned_extras,
    take,
    ten_k_split,
)
from volbench.data import images as images_mod
from volbench.data.idx import KnownChecksum, encode_idx, parse_idx, read_idx
from volbench.data.synthetic import boolean_truth_table, derive_seed

SHARED = Path("/work/shared/data")
FASHION = Path("/usr/share/datasets/fashion-mnist")
needs_mnist = pytest.mark.skipif(not (SHARED / "mnist-10k").is_dir(), reason="shipped MNIST 10k not present")
needs_fashion = pytest.mark.skipif(not FASHION.is_dir(), reason="Debian dataset-fashion-mnist not installed")

T10K_FIRST_LABELS = [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
T10K_CLASS_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
T10K_MEAN_PIXEL = 33.79  # of 255, as published with rounding to 2 decimals


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory, monkeypatch):
    """No test reads the user's real cache or VOLBENCH_DATA."""
    monkeypatch.delenv("VOLBENCH_DATA", raising=False)
    cache = tmp_path_factory.mktemp("xdg-cache")
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache


def _write_gz(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(encode_idx(array)))
    return path


@functools.lru_cache(maxsize=1)
def _mnist() -> Dataset:
    return load("mnist", root=SHARED)


# ------------------------------------------------------------------------------------ registry
def test_names_lists_every_loader():
    assert names() == ["mnist", "fashion_mnist", "cifar10", "svhn", "digits", "swiss_roll", "modular_addition",
                       "boolean", "mnist_binary", "shakespeare_char"], "names() must list the ten names in order"


def test_unknown_name_and_option_are_clear_errors():
    with pytest.raises(ValueError, match="unknown data set 'mnsit'.*mnist"):
        load("mnsit")
    with pytest.raises(TypeError, match="unknown option.*n_trian.*valid options: n_train"):
        load("swiss_roll", n_trian=10)
    with pytest.raises(TypeError, match="seed must be a non-negative int"):
        load("swiss_roll", seed=1.5)
    with pytest.raises(TypeError, match="dtype"):
        load("boolean", dtype=torch.int64)


# ---------------------------------------------------------------------------------------- roots
def test_data_roots_order_and_xdg(tmp_path):
    env = {"VOLBENCH_DATA": os.pathsep.join([str(tmp_path / "b"), "", str(tmp_path / "c")]),
           "XDG_CACHE_HOME": str(tmp_path / "x")}
    got = data_roots([tmp_path / "a", tmp_path / "b"], environ=env)
    want = [tmp_path / "a", tmp_path / "b", tmp_path / "c", tmp_path / "x" / "volbench" / "data"]
    assert list(got) == want, "order must be root argument, VOLBENCH_DATA entries, user cache; duplicates dropped"
    home = data_roots(environ={"XDG_CACHE_HOME": "relative/path"})
    assert home == (Path.home() / ".cache" / "volbench" / "data",), "a relative XDG_CACHE_HOME must be ignored"


# -------------------------------------------------------------------------------------- IDX
@given(shape=st.lists(st.integers(0, 5), min_size=1, max_size=3),
       dtype=st.sampled_from(["u1", "i1", ">i2", ">i4", ">f4", ">f8"]), seed=st.integers(0, 2 ** 32 - 1))
def test_idx_round_trip(shape, dtype, seed):
    a = (np.random.RandomState(seed).rand(*shape) * 100).astype(dtype)
    back = parse_idx(encode_idx(a), name="x")
    assert back.shape == a.shape and np.array_equal(back, a.astype(back.dtype)), "IDX encode/decode must be exact"


def test_idx_rejects_truncated_and_garbage(tmp_path):
    raw = encode_idx(np.zeros((3, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="truncated"):
        parse_idx(raw[:-1], name="f")
    with pytest.raises(ValueError, match="not an IDX file"):
        parse_idx(b"\x1f\x8b\x08\x00junk", name="f")
    bad = tmp_path / "t.gz"
    bad.write_bytes(gzip.compress(raw)[:-6])  # cut the gzip trailer
    with pytest.raises(ValueError, match="gzip stream is corrupt"):
        read_idx(bad)


# ---------------------------------------------------------------------------------------- MNIST
@needs_mnist
def test_mnist_10k_content_matches_the_published_test_split():
    ds = _mnist()
    assert ds.variant == "mnist-10k" and ds.source == str(SHARED / "mnist-10k"), "shipped pair => 10k variant"
    assert (ds.n_train, ds.n_test) == (8000, 2000), "10k variant splits 8,000 train / 2,000 test"
    assert ds.train_inputs.shape == (8000, 1, 28, 28) and ds.train_inputs.dtype == torch.float32
    assert ds.train_targets.dtype == torch.int64 and ds.train_labels is ds.train_targets
    assert ds.n_classes == 10 and ds.input_shape == (1, 28, 28)
    assert float(ds.train_inputs.min()) == 0.0 and float(ds.train_inputs.max()) == 1.0, "pixels span [0, 1]"
    # Undo the fixed split to recover the file order.
    tr, te = ten_k_split()
    labels = torch.empty(10_000, dtype=torch.int64)
    labels[tr], labels[te] = ds.train_targets, ds.test_targets
    pixels = torch.empty(10_000, 1, 28, 28)
    pixels[tr], pixels[te] = ds.train_inputs, ds.test_inputs
    assert labels[:10].tolist() == T10K_FIRST_LABELS, "first ten t10k labels are 7 2 1 0 4 1 4 9 5 9"
    assert torch.bincount(labels).tolist() == T10K_CLASS_COUNTS, "t10k class counts"
    mean = float(pixels.double().mean()) * 255
    assert abs(mean - T10K_MEAN_PIXEL) < 0.005, f"mean pixel {mean:.4f}/255 must round to 33.79 (tol 0.005)"
    raw = read_idx(SHARED / "mnist-10k" / "t10k-images-idx3-ubyte.gz").array
    i = int(tr[123])
    assert torch.equal(ds.train_inputs[123, 0] * 255, torch.from_numpy(raw[i].astype(np.float32))), \
        "train example k must be file image ten_k_split()[0][k], exactly (x/255*255 is exact in float32 here)"
    files = ds.meta["files"]
    assert {f["verified"] for f in files.values()} == {"content"}, "both files verified against README checksums"
    json.dumps(ds.describe())  # must be JSON-serialisable for reports


def test_ten_k_split_is_pinned():
    tr, te = ten_k_split()
    assert (tr.numel(), te.numel()) == (8000, 2000)
    assert torch.equal(torch.sort(torch.cat([tr, te])).values, torch.arange(10_000)), "split is a permutation"
    # Regression pin: changing the split silently would change every result on the 10k variant.
    assert tr[:6].tolist() == [9394, 898, 2398, 5906, 2343, 8225] and te[:4].tolist() == [3477, 9567, 8284, 3129]
    digest = hashlib.sha256(torch.cat([tr, te]).numpy().astype("<i8").tobytes()).hexdigest()
    assert digest == "bb26ef9543114d03309aee94f5ac132138ffe1af7bbdf0598a7e9e98c3f6dff3", "pinned split checksum"


@needs_mnist
def test_mnist_found_through_env_var_and_is_deterministic(monkeypatch, tmp_path):
    monkeypatch.setenv("VOLBENCH_DATA", os.pathsep.join([str(tmp_path / "missing"), str(SHARED)]))
    a = load("mnist", seed=5)
    a.train_inputs.zero_()  # callers mutating their copy must not corrupt the in-process cache
    b = load("mnist", seed=5)
    ref = _mnist()
    assert b.source == ref.source and b.seed == 5, "found via VOLBENCH_DATA's second entry; seed recorded"
    assert torch.equal(b.train_inputs, ref.train_inputs) and torch.equal(b.test_targets, ref.test_targets), \
        "two loads give identical tensors, unaffected by mutating an earlier result"


@needs_mnist
def test_mnist_checksum_error_on_corrupted_copy(tmp_path):
    folder = tmp_path / "mnist-10k"
    folder.mkdir()
    shutil.copy(SHARED / "mnist-10k" / "t10k-labels-idx1-ubyte.gz", folder)
    raw = bytearray(gzip.decompress((SHARED / "mnist-10k" / "t10k-images-idx3-ubyte.gz").read_bytes()))
    raw[16 + 784 * 5 + 300] ^= 0xFF  # one pixel of image 5
    (folder / "t10k-images-idx3-ubyte").write_bytes(bytes(raw))  # uncompressed copies are read first
    actual = hashlib.sha256(bytes(raw)).hexdigest()
    with pytest.raises(ChecksumError) as err:
        load("mnist", root=tmp_path)
    msg = str(err.value)
    for part in ("t10k-images-idx3-ubyte", actual,
                 images_mod.MNIST_CHECKSUMS["t10k-images-idx3-ubyte"].content):
        assert part in msg, f"checksum error must name the file, the actual and the expected checksum: {part}"


def test_mnist_not_found_message(tmp_path, monkeypatch, isolated_env):
    (tmp_path / "a").mkdir()
    monkeypatch.setenv("VOLBENCH_DATA", str(tmp_path / "b"))
    with pytest.raises(DatasetNotFoundError) as err:
        load("mnist", root=tmp_path / "a")
    assert isinstance(err.value, FileNotFoundError), "DatasetNotFoundError subclasses FileNotFoundError"
    msg = str(err.value)
    for part in ("VOLBENCH_DATA", str(tmp_path / "a" / "mnist"), str(tmp_path / "b" / "MNIST" / "raw"),
                 str(isolated_env / "volbench" / "data" / "mnist-10k"), "t10k-images-idx3-ubyte",
                 "train-labels-idx1-ubyte", "download=True"):
        assert part in msg, f"not-found message must mention {part!r}"


def test_mnist_prefers_full_set_and_variant_option(tmp_path):
    rng = np.random.RandomState(0)
    full = tmp_path / "MNIST" / "raw"
    arrays = {"train-images-idx3-ubyte": rng.randint(0, 256, (12, 28, 28)).astype(np.uint8),
              "train-labels-idx1-ubyte": rng.randint(0, 10, 12).astype(np.uint8),
              "t10k-images-idx3-ubyte": rng.randint(0, 256, (7, 28, 28)).astype(np.uint8),
              "t10k-labels-idx1-ubyte": rng.randint(0, 10, 7).astype(np.uint8)}
    for stem, a in arrays.items():
        (full.mkdir(parents=True, exist_ok=True), (full / stem).write_bytes(encode_idx(a)))
    # Fake t10k content differs from the official one, so its checksum check must fail...
    with pytest.raises(ChecksumError):
        load("mnist", root=tmp_path)
    # ...unless no content checksum is known: then the set loads, marked unverified.
    clean = dataclasses.replace(images_mod._MNIST, checksums={})
    ds = images_mod._load_idx_family(clean, root=tmp_path, seed=0, variant="auto", download=False, mirrors=None)
    assert ds.variant == "mnist-full" and (ds.n_train, ds.n_test) == (12, 7), "four files => full variant"
    assert torch.equal(ds.train_targets, torch.from_numpy(arrays["train-labels-idx1-ubyte"].astype(np.int64)))
    assert {f["verified"] for f in ds.meta["files"].values()} == {"unverified"}
    with pytest.raises(ValueError, match="10,000-image"):
        images_mod._load_idx_family(clean, root=tmp_path, seed=0, variant="10k", download=False, mirrors=None)
    with pytest.raises(ValueError, match="variant must be one of"):
        load("mnist", root=tmp_path, variant="60k")


# ---------------------------------------------------------------------------------- downloads
@pytest.fixture
def http_dir(tmp_path):
    """A folder served over HTTP on 127.0.0.1 (never the real network)."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_download_file_checks_sha256(http_dir, tmp_path):
    served, url = http_dir
    payload = os.urandom(3000)
    (served / "blob.bin").write_bytes(payload)
    good = hashlib.sha256(payload).hexdigest()
    dest = tmp_path / "out" / "blob.bin"
    assert download_file(url + "blob.bin", dest, sha256=good).read_bytes() == payload, "right checksum => file"
    wrong = "0" * 64
    dest2 = tmp_path / "out" / "other.bin"
    with pytest.raises(ChecksumError) as err:
        download_file(url + "blob.bin", dest2, sha256=wrong)
    assert good in str(err.value) and wrong in str(err.value) and "blob.bin" in str(err.value), \
        "the error names the URL, the expected and the actual checksum"
    assert not dest2.exists() and not list(dest2.parent.glob("*.part")), "nothing partial is left behind"
    with pytest.raises(ValueError, match="without a checksum"):
        download_file(url + "blob.bin", dest2)
    # content_sha256 checks the gzip-decompressed bytes (file:// works too).
    gz = tmp_path / "c.gz"
    gz.write_bytes(gzip.compress(b"content"))
    out = download_file(gz.as_uri(), tmp_path / "out" / "c.gz", content_sha256=hashlib.sha256(b"content").hexdigest())
    assert gzip.decompress(out.read_bytes()) == b"content"


def test_mnist_download_into_user_cache(http_dir, monkeypatch, isolated_env):
    served, url = http_dir
    rng = np.random.RandomState(1)
    arrays = {"train-images-idx3-ubyte": rng.randint(0, 256, (6, 28, 28)).astype(np.uint8),
              "train-labels-idx1-ubyte": rng.randint(0, 10, 6).astype(np.uint8),
              "t10k-images-idx3-ubyte": rng.randint(0, 256, (4, 28, 28)).astype(np.uint8),
              "t10k-labels-idx1-ubyte": rng.randint(0, 10, 4).astype(np.uint8)}
    for stem, a in arrays.items():
        _write_gz(served / f"{stem}.gz", a)
    # Real checksums: the fake files must be refused and nothing kept in the cache.
    with pytest.raises(ChecksumError, match="could not download a verified copy"):
        load("mnist", download=True, mirrors=[url])
    cache = isolated_env / "volbench" / "data" / "mnist"
    assert not any(cache.glob("*idx*ubyte.gz")), "rejected downloads must not be left in the cache"
    # Pin the fake files' archive checksums: the same path now succeeds.
    fake = {stem: KnownChecksum(archive=hashlib.sha256((served / f"{stem}.gz").read_bytes()).hexdigest())
            for stem in arrays}
    monkeypatch.setattr(images_mod, "_MNIST", dataclasses.replace(images_mod._MNIST, checksums=fake))
    ds = load("mnist", download=True, mirrors=["file:///nonexistent/mirror/", url])  # first mirror fails
    assert ds.variant == "mnist-full" and ds.source == str(cache), "downloaded into the user cache"
    assert {f["verified"] for f in ds.meta["files"].values()} == {"archive"}
    assert torch.equal(ds.test_targets, torch.from_numpy(arrays["t10k-labels-idx1-ubyte"].astype(np.int64)))
    again = load("mnist")  # found in the cache without download
    assert again.source == str(cache) and torch.equal(again.train_inputs, ds.train_inputs)


def test_download_unreachable_mirror_is_not_found(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="could not download"):
        load("mnist", root=tmp_path, download=True, mirrors=[(tmp_path / "nope").as_uri() + "/"])


# -------------------------------------------------------------------------------- Fashion-MNIST
@needs_fashion
def test_fashion_mnist_from_debian_package():
    ds = load("fashion_mnist")
    assert ds.source == str(FASHION) and ds.variant == "fashion-mnist-full"
    assert (ds.n_train, ds.n_test) == (60_000, 10_000), "Fashion-MNIST has 60,000 / 10,000 images"
    assert ds.train_inputs.shape == (60_000, 1, 28, 28) and ds.train_inputs.dtype == torch.float32
    assert ds.train_targets[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5], "published first train labels"
    assert ds.test_targets[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7], "published first test labels"
    assert torch.bincount(ds.train_targets).tolist() == [6000] * 10 and \
        torch.bincount(ds.test_targets).tolist() == [1000] * 10, "balanced classes"
    assert {f["verified"] for f in ds.meta["files"].values()} == {"content"}


# ------------------------------------------------------------------------------------- CIFAR-10
def _fake_cifar(folder: Path, sizes=(2, 2, 2, 2, 2, 3)) -> dict[str, tuple[np.ndarray, list[int]]]:
    folder.mkdir(parents=True)
    rng = np.random.RandomState(2)
    out = {}
    for name, n in zip([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], sizes):
        data = rng.randint(0, 256, (n, 3072)).astype(np.uint8)
        labels = rng.randint(0, 10, n).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"data": data, b"labels": labels}, f, protocol=2)
        out[name] = (data, labels)
    return out


def test_cifar10_fake_batches_load(tmp_path):
    fake = _fake_cifar(tmp_path / "cifar-10-batches-py")
    ds = load("cifar10", root=tmp_path)
    assert ds.train_inputs.shape == (10, 3, 32, 32) and ds.test_inputs.shape == (3, 3, 32, 32)
    assert ds.train_targets.tolist() == sum((fake[f"data_batch_{i}"][1] for i in range(1, 6)), []), \
        "train labels are the batches' labels in order"
    data = fake["data_batch_2"][0]
    for c in range(3):  # plain-loop oracle of the documented layout: R plane, G plane, B plane
        for h in range(0, 32, 5):
            for w in range(32):
                assert round(float(ds.train_inputs[2, c, h, w]) * 255) == data[0, c * 1024 + h * 32 + w]
    assert ds.meta["files"]["test_batch"]["verified"] == "unverified"


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_cifar10_refuses_code_in_pickles(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    _fake_cifar(folder)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": _Evil(), b"labels": []}, f, protocol=2)
    with pytest.raises(ValueError, match="refusing to unpickle .*print"):
        load("cifar10", root=tmp_path)


def test_cifar10_and_svhn_not_found(tmp_path):
    for name, part in (("cifar10", "cifar-10-batches-py"), ("svhn", "train_32x32.mat")):
        with pytest.raises(DatasetNotFoundError) as err:
            load(name, root=tmp_path)
        assert "VOLBENCH_DATA" in str(err.value) and part in str(err.value), f"{name}: message names layout"


# ------------------------------------------------------------------------------------------ SVHN
def test_svhn_fake_mat_files_load(tmp_path):
    from scipy.io import savemat

    rng = np.random.RandomState(3)
    folder = tmp_path / "svhn"
    folder.mkdir()
    mats = {}
    for name, n in (("train_32x32.mat", 5), ("test_32x32.mat", 2)):
        x = rng.randint(0, 256, (32, 32, 3, n)).astype(np.uint8)
        y = np.array([[10], [1], [9], [10], [5]][:n], dtype=np.uint8)
        savemat(folder / name, {"X": x, "y": y})
        mats[name] = (x, y)
    ds = load("svhn", root=tmp_path)
    assert ds.train_inputs.shape == (5, 3, 32, 32) and ds.test_inputs.shape == (2, 3, 32, 32)
    assert ds.train_targets.tolist() == [0, 1, 9, 0, 5], "SVHN label 10 is the digit 0"
    x = mats["train_32x32.mat"][0]
    for n in (0, 4):  # plain-loop oracle of the [H, W, C, N] -> [N, C, H, W] transpose
        for c in range(3):
            for h in range(0, 32, 7):
                for w in range(32):
                    assert round(float(ds.train_inputs[n, c, h, w]) * 255) == x[h, w, c, n]


# ---------------------------------------------------------------------------------------- digits
def test_digits_default_split():
    from sklearn.datasets import load_digits

    ds = load("digits", seed=4)
    assert (ds.n_train, ds.n_test) == (1024, 773), "Scherlis & Belrose: 1,024 train, 773 held out"
    assert ds.train_inputs.shape == (1024, 1, 8, 8) and ds.train_inputs.dtype == torch.float32
    assert float(ds.train_inputs.min()) == 0.0 and float(ds.train_inputs.max()) == 1.0, "scaled by 1/16"
    sk = load_digits()
    rows = sorted(map(tuple,
                      (torch.cat([ds.train_inputs, ds.test_inputs]).reshape(-1, 64) * 16).round().int().tolist()))
    want = sorted(map(tuple, sk.data.astype(int).tolist()))
    assert rows == want, "train + test is exactly the 1,797 digits"
    again, other = load("digits", seed=4), load("digits", seed=5)
    assert torch.equal(again.train_inputs, ds.train_inputs), "same seed, same split"
    assert not torch.equal(other.train_targets, ds.train_targets), "different seed, different split"


# ------------------------------------------------------------------------------------ swiss roll
@given(seed=st.integers(0, 2 ** 40), half=st.integers(1, 30))
def test_swiss_roll_matches_loop_oracle(seed, half):
    ds = load("swiss_roll", seed=seed, n_train=2 * half, n_test=4)
    g = torch.Generator().manual_seed(derive_seed(seed, "train"))
    u = torch.rand(half, generator=g, dtype=torch.float64)
    eps = torch.randn(half, 2, generator=g, dtype=torch.float64)
    for i in range(half):  # the paper's formula, one point at a time
        t = math.sqrt(float(u[i])) * 1.7 * 2 * math.pi
        x = -1.5 * t * math.cos(t) + 0.3 * float(eps[i, 0])
        y = 1.5 * t * math.sin(t) + 0.3 * float(eps[i, 1])
        # computed in float64 (a few roundings of t and of 1.5 t (|t| + 1) through cos / sin), stored
        # in float32 (u32 of the value)
        tol_x = unit_roundoff(torch.float32) * abs(x) + gamma(8) * (1.5 * t * (t + 1) + 0.3 * abs(float(eps[i, 0])))
        tol_y = unit_roundoff(torch.float32) * abs(y) + gamma(8) * (1.5 * t * (t + 1) + 0.3 * abs(float(eps[i, 1])))
        assert abs(float(ds.train_inputs[i, 0]) - x) <= tol_x and abs(float(ds.train_inputs[i, 1]) - y) <= tol_y, \
            "arm point must match the formula (float64 computation, float32 storage)"
        assert torch.equal(ds.train_inputs[half + i], -ds.train_inputs[i]), "class 1 is the reflection -arm"
    assert ds.train_targets.shape == (2 * half, 1) and ds.train_targets.dtype == torch.float32
    assert ds.train_labels.tolist() == [0] * half + [1] * half
    assert torch.equal(ds.train_targets[:, 0], ds.train_labels.float())


def test_swiss_roll_test_size_does_not_change_train_and_validates():
    a, b = load("swiss_roll", n_test=10, seed=9), load("swiss_roll", n_test=200, seed=9)
    assert torch.equal(a.train_inputs, b.train_inputs), "train data independent of n_test"
    assert not torch.equal(a.test_inputs, load("swiss_roll", n_test=10, seed=10).test_inputs)
    with pytest.raises(ValueError, match="must be even"):
        load("swiss_roll", n_train=801)
    with pytest.raises(ValueError, match="n_test must be >= 0"):
        load("swiss_roll", n_test=-2)


# ------------------------------------------------------------------------------ modular addition
@given(p=st.integers(2, 13), frac=st.floats(0.05, 1.0), seed=st.integers(0, 2 ** 40))
def test_modular_addition_exact(p, frac, seed):
    if round(frac * p * p) == 0:
        with pytest.raises(ValueError, match="leaves no training pair"):
            load("modular_addition", p=p, train_fraction=frac, seed=seed)
        return
    ds = load("modular_addition", p=p, train_fraction=frac, seed=seed)
    assert ds.n_train == round(frac * p * p) and ds.n_train + ds.n_test == p * p
    seen = []
    for split in ("train", "test"):
        x, y, lab = (getattr(ds, f"{split}_{f}") for f in ("inputs", "targets", "labels"))
        for row in range(x.shape[0]):  # plain-loop oracle
            ones = [j for j in range(2 * p) if x[row, j] == 1.0]
            assert len(ones) == 2 and float(x[row].sum()) == 2.0, "input is two one-hots"
            a, b = ones[0], ones[1] - p
            assert 0 <= a < p and 0 <= b < p
            assert int(lab[row]) == (a + b) % p and float(y[row, (a + b) % p]) == 1.0 and float(y[row].sum()) == 1.0
            seen.append((split, a, b))
    pairs = [(a, b) for _, a, b in seen]
    assert sorted(pairs) == [(a, b) for a in range(p) for b in range(p)], "every pair exactly once: no overlap"


def test_modular_addition_defaults_and_seeds():
    ds = load("modular_addition")
    assert (ds.n_train, ds.n_test, ds.input_shape, ds.n_classes) == (8468, 941, (194,), 97)
    assert ds.train_targets.dtype == torch.float32 and ds.train_targets.shape == (8468, 97), "one-hot for MSE"
    other = load("modular_addition", seed=1)
    assert not torch.equal(ds.train_labels, other.train_labels), "seed changes the held-out pairs"
    with pytest.raises(ValueError, match="train_fraction"):
        load("modular_addition", train_fraction=0.0)


# ---------------------------------------------------------------------------------------- Boolean
def test_boolean_inputs_and_functions():
    ds = load("boolean")
    assert ds.train_inputs.shape == (128, 7) and ds.n_test == 0 and ds.train_targets.shape == (128, 1)
    for i in range(128):  # row i is i in binary, MSB first
        assert ds.train_inputs[i].int().tolist() == [int(c) for c in format(i, "07b")]
    assert float(ds.train_targets.sum()) == 0.0, "default target: the all-zero function"
    parity = load("boolean", function="parity", encoding="pm1")
    assert set(parity.train_inputs.unique().tolist()) == {-1.0, 1.0}
    assert parity.train_labels.tolist() == [bin(i).count("1") % 2 for i in range(128)]
    major = load("boolean", function="majority").train_labels.tolist()
    assert major == [int(bin(i).count("1") > 3.5) for i in range(128)]
    even = load("boolean", n=4, function="majority").train_labels.tolist()
    assert even == [int(bin(i).count("1") > 2) for i in range(16)], "majority means strictly more than n/2 ones"
    assert boolean_truth_table(0b1011, 2).tolist() == [1, 1, 0, 1], "bit i of the int is f(row i)"
    split = load("boolean", n=4, n_train=10, seed=2, function=[0, 1] * 8)
    assert (split.n_train, split.n_test) == (10, 6)
    with pytest.raises(ValueError, match="unknown Boolean function 'xor'.*parity"):
        load("boolean", function="xor")
    with pytest.raises(ValueError, match="16 integer values"):
        load("boolean", n=4, function=[0, 2] * 8)


# ----------------------------------------------------------------------------------- mnist_binary
@needs_mnist
def test_mnist_binary_labels():
    ds, ref = load("mnist_binary", root=SHARED), _mnist()
    assert ds.train_targets.shape == (8000, 1) and ds.train_targets.dtype == torch.float32
    assert torch.equal(ds.train_labels, (ref.train_targets >= 5).long()), "digits 0-4 -> 0, 5-9 -> 1"
    total = int(ds.train_labels.sum() + ds.test_labels.sum())
    assert total == sum(T10K_CLASS_COUNTS[5:]), "class 1 = digits 5-9 = 4,861 of the t10k file"
    assert ds.n_classes == 2 and ds.variant == "mnist-10k"


# ------------------------------------------------------------------------------------- subsets
def _toy(n: int, c: int, seed: int = 0, *, binary: bool = False) -> Dataset:
    labels = torch.randint(0, c, (n,), generator=torch.Generator().manual_seed(seed))
    targets = labels.float().unsqueeze(1) if binary else labels
    return Dataset(name="toy", train_inputs=torch.arange(n, dtype=torch.float32).unsqueeze(1),
                   train_targets=targets, test_inputs=torch.zeros(0, 1),
                   test_targets=torch.zeros(0, 1) if binary else torch.zeros(0, dtype=torch.int64),
                   n_classes=c, input_shape=(1,), variant="toy", seed=seed, source="generated", meta={},
                   train_labels=labels if binary else None,
                   test_labels=torch.zeros(0, dtype=torch.int64) if binary else None)


@given(data=st.data(), n=st.integers(1, 150), seed=st.integers(0, 2 ** 40),
       base_kind=st.sampled_from(["none", "int", "tensor"]))
def test_nested_subsets_are_nested(data, n, seed, base_kind):
    if base_kind == "none":
        base, k = None, 0
    elif base_kind == "int":
        k = data.draw(st.integers(0, n))
        base = k
    else:
        base = torch.tensor(data.draw(st.lists(st.integers(0, n - 1), unique=True, max_size=n)), dtype=torch.int64)
        k = base.numel()
    sizes = data.draw(st.lists(st.integers(k, n), min_size=1, max_size=6))
    sets = nested_subsets(n, sizes, base=base, seed=seed)
    assert [len(s) for s in sets] == sizes
    for s in sets:
        assert s.dtype == torch.int64 and torch.unique(s).numel() == s.numel() and (s.numel() == 0 or int(s.max()) < n)
        assert bool(torch.isin(sets.base, s).all()), "every set contains the base"
    for i in range(len(sizes)):
        for j in range(len(sizes)):
            if sizes[i] <= sizes[j]:
                assert bool(torch.isin(sets[i], sets[j]).all()), "smaller sets are contained in larger ones"
    again = nested_subsets(n, sizes, base=base, seed=seed)
    assert all(torch.equal(a, b) for a, b in zip(sets, again)), "deterministic for a seed"
    if base_kind == "tensor":
        assert torch.equal(sets.base, base)


def test_nested_subsets_seed_and_errors():
    ds = load("boolean")
    a, b = nested_subsets(ds, [128], seed=data_seed_for(0)), nested_subsets(ds, [128], seed=data_seed_for(1))
    assert data_seed_for(3) == 13 and a.seed == 10, "main paper: data seed = model seed + 10"
    assert not torch.equal(a[0], b[0]), "different seeds shuffle differently (P(same) = 1/128!)"
    with pytest.raises(ValueError, match="exceeds the 128"):
        nested_subsets(ds, [129], seed=0)
    with pytest.raises(ValueError, match="must be >= 0"):
        nested_subsets(ds, [-1], seed=0)
    with pytest.raises(ValueError, match="smaller than the base"):
        nested_subsets(ds, [5], base=10, seed=0)
    with pytest.raises(ValueError, match="repeated"):
        nested_subsets(ds, [5], base=torch.tensor([1, 1]), seed=0)
    with pytest.raises(TypeError, match="sequence of ints"):
        nested_subsets(ds, 5, seed=0)


@given(n=st.integers(2, 120), c=st.integers(2, 12), seed=st.integers(0, 2 ** 40), data=st.data())
def test_poisoned_extras_always_wrong_and_nested(n, c, seed, data):
    ds = _toy(n, c, seed)
    base = torch.tensor(data.draw(st.lists(st.integers(0, n - 1), unique=True, max_size=n - 1)), dtype=torch.int64)
    m = data.draw(st.integers(0, n - base.numel()))
    ex = poisoned_extras(ds, base, m, seed=seed)
    assert len(ex) == m and not bool(torch.isin(ex.indices, base).any()), "poison comes from outside the base"
    assert torch.unique(ex.indices).numel() == m
    assert torch.equal(ex.true_labels, ds.train_labels[ex.indices])
    assert bool((ex.labels != ex.true_labels).all()), "(label + randint(1, C)) mod C is never the true label"
    assert bool(((ex.labels >= 0) & (ex.labels < c)).all()) and torch.equal(ex.targets, ex.labels)
    smaller = poisoned_extras(ds, base, m // 2, seed=seed)
    assert torch.equal(smaller.indices, ex.indices[: m // 2]) and torch.equal(smaller.labels, ex.labels[: m // 2]), \
        "fewer poisons with the same seed are a prefix (nested poison levels)"


def test_poison_offsets_cover_every_wrong_class():
    ds = _toy(4000, 5)
    ex = poisoned_extras(ds, None, 4000, seed=0)
    offsets = torch.bincount((ex.labels - ex.true_labels) % 5, minlength=5).tolist()
    assert offsets[0] == 0 and min(offsets[1:]) > 850, \
        f"offsets uniform on 1..4 (1000 each, > 850 at 5 sigma): {offsets}"


def test_poison_target_formats_and_errors():
    mod = load("modular_addition", p=7)
    ex = poisoned_extras(mod, None, 10, seed=1)
    assert ex.targets.shape == (10, 7) and torch.equal(ex.targets.argmax(1), ex.labels), "one-hot for MSE"
    binary = _toy(50, 2, binary=True)
    flips = poisoned_extras(binary, None, 20, seed=1)
    assert torch.equal(flips.targets[:, 0], 1.0 - binary.train_targets[flips.indices, 0]), "binary: flipped"
    with pytest.raises(ValueError, match="only 3 train examples lie outside"):
        poisoned_extras(_toy(5, 3), torch.tensor([0, 1]), 4, seed=0)


def test_imbalanced_extras_fraction():
    ds = _toy(2000, 10)
    base = torch.arange(100)
    ex = imbalanced_extras(ds, 300, target_class=3, ratio=0.55, seed=7, exclude=base)
    assert int((ex.labels == 3).sum()) == 165, "exactly round(0.55 * 300) from the target class"
    assert not bool(torch.isin(ex.indices, base).any()) and torch.unique(ex.indices).numel() == 300
    assert torch.equal(ex.labels, ds.train_labels[ex.indices]) and torch.equal(ex.labels, ex.true_labels)
    assert torch.equal(imbalanced_extras(ds, 300, target_class=3, ratio=0.55, seed=7, exclude=base).indices, ex.indices)
    with pytest.raises(ValueError, match="need 1900 examples of class 3"):
        imbalanced_extras(ds, 2000, target_class=3, ratio=0.95, seed=0)
    with pytest.raises(ValueError, match="ratio must lie in"):
        imbalanced_extras(ds, 10, target_class=3, ratio=1.5, seed=0)
    with pytest.raises(ValueError, match="target_class must be below"):
        imbalanced_extras(ds, 10, target_class=10, ratio=0.5, seed=0)


@needs_mnist
def test_attack_set_and_take_on_binary_mnist():
    ds = load("mnist_binary", root=SHARED)
    s = nested_subsets(ds, [500], seed=data_seed_for(0))[0]
    a = attack_set(ds, 500, seed=3, exclude=s)
    assert not bool(torch.isin(a.indices, s).any()), "A is disjoint from S (and from E: A is in the train split)"
    assert torch.equal(a.targets[:, 0], 1.0 - ds.train_targets[a.indices, 0]), "binary attack labels are flipped"
    batch = take(ds, s, extras=a)
    assert batch.inputs.shape == (1000, 1, 28, 28) and batch.targets.shape == (1000, 1)
    assert torch.equal(batch.targets[500:], a.targets) and torch.equal(batch.labels[:500], ds.train_labels[s])
    with pytest.raises(ValueError, match="overlap"):
        take(ds, torch.cat([s, a.indices[:1]]), extras=a)
    with pytest.raises(ValueError, match="only 7500"):
        attack_set(ds, 7501, seed=0, exclude=s)
    e = take(ds, torch.arange(3), split="test")
    assert torch.equal(e.inputs, ds.test_inputs[:3])


# ------------------------------------------------------------------------------------ Dataset
def test_dataset_validation_and_describe():
    with pytest.raises(ValueError, match="3 inputs but 2 targets"):
        Dataset(name="bad", train_inputs=torch.zeros(3, 2), train_targets=torch.zeros(2, dtype=torch.int64),
                test_inputs=torch.zeros(0, 2), test_targets=torch.zeros(0, dtype=torch.int64), n_classes=2,
                input_shape=(2,), variant="x", seed=0, source="generated", meta={})
    ds = load("swiss_roll", n_train=10, n_test=4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ds.seed = 3  # type: ignore[misc]
    d = json.loads(json.dumps(ds.describe()))
    assert d["n_train"] == 10 and d["seed"] == 0 and d["meta"]["derived_seeds"]["train"] == derive_seed(0, "train")
    d64 = load("swiss_roll", n_train=10, n_test=4, dtype=torch.float64)
    assert d64.train_inputs.dtype == torch.float64 and d64.train_labels.dtype == torch.int64
    assert torch.equal(d64.train_inputs.float(), ds.train_inputs)


@pytest.mark.gpu
@requires_cuda
def test_load_onto_cuda():
    cpu, gpu = load("swiss_roll", n_train=20), load("swiss_roll", n_train=20, device="cuda")
    assert gpu.train_inputs.is_cuda and gpu.train_labels.is_cuda
    assert torch.equal(gpu.train_inputs.cpu(), cpu.train_inputs), "same seed, same data on every device"
