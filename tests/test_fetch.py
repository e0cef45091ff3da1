"""Getting data: `volbench data fetch/list`, offline and unreachable networks, corrupt, cut-short,
killed and disk-full downloads, generated stand-ins in the real formats. Only 127.0.0.1 servers
and file:// URLs are contacted."""
from __future__ import annotations

import dataclasses
import errno
import functools
import gzip
import hashlib
import http.server
import io
import os
import pickle
import signal
import socket
import subprocess
import sys
import tarfile
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from volbench.cli import main
from volbench.data import ChecksumError, DatasetNotFoundError, download, fetch, fixtures, images, load
from volbench.data.download import DownloadError, check_reachable, download_file
from volbench.data.idx import encode_idx


@pytest.fixture(autouse=True)
def isolated(tmp_path_factory, monkeypatch):
    """No test reads the user's cache, VOLBENCH_DATA or the real system folder."""
    monkeypatch.delenv("VOLBENCH_DATA", raising=False)
    monkeypatch.delenv(fetch.OFFLINE_VAR, raising=False)
    cache = tmp_path_factory.mktemp("xdg")
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    # Debian's Fashion-MNIST may be installed (CI installs it): these tests must not see it.
    fashion = dataclasses.replace(images._FASHION, system_dirs=())
    monkeypatch.setattr(images, "_FASHION", fashion)
    monkeypatch.setattr(images, "IDX_FAMILIES", {"mnist": images._MNIST, "fashion_mnist": fashion})
    download._unreachable.clear()
    return cache / "volbench" / "data"


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; ``/short/NAME`` announces the full length and sends half; ``/slow/NAME``
    sends 1 kB per 0.2 s."""

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):  # noqa: N802
        if self.path.startswith(("/short/", "/slow/")):
            kind, name = self.path.split("/")[1:3]
            data = (Path(self.directory) / name).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if kind == "short":
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            for i in range(0, len(data), 1024):
                self.wfile.write(data[i:i + 1024])
                self.wfile.flush()
                time.sleep(0.2)
            return
        super().do_GET()


@pytest.fixture
def server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------- one-line reasons
def test_offline_forbids_downloads_and_says_which_files_go_where(monkeypatch, isolated):
    monkeypatch.setenv(fetch.OFFLINE_VAR, "1")
    for name, parts in (("fashion_mnist", ["apt-get install dataset-fashion-mnist", "train-images-idx3-ubyte.gz",
                                           "fashion-mnist/", "volbench data fetch fashion_mnist"]),
                        ("cifar10", ["data_batch_1", "test_batch", "cifar10/cifar-10-batches-py/",
                                     "cifar-10-python.tar.gz"]),
                        ("svhn", ["train_32x32.mat", "test_32x32.mat", "svhn/"]),
                        ("mnist_binary", ["MNIST's files", "volbench data fetch mnist", "mnist/"])):
        with pytest.raises(fetch.FetchError) as err:
            fetch.ensure(name)
        reason = err.value.reason
        assert "\n" not in reason and "VOLBENCH_OFFLINE=1 forbids downloads" in reason
        assert "VOLBENCH_DATA" in reason and "root=" in reason and str(isolated) in reason
        for part in parts:
            assert part in reason, f"{name}: the reason must name {part!r}: {reason}"
        assert isinstance(err.value, DatasetNotFoundError)
    assert fetch.offline({"VOLBENCH_OFFLINE": "0"}) is False and fetch.offline({"VOLBENCH_OFFLINE": "yes"})


def test_not_found_error_keeps_dataset_and_reason_through_pickling():
    err = DatasetNotFoundError("long\nmessage", dataset="svhn", reason="one line")
    back = pickle.loads(pickle.dumps(err))
    assert (back.dataset, back.reason, str(back)) == ("svhn", "one line", "long\nmessage")
    assert DatasetNotFoundError("first line\nsecond").reason == "first line"


def test_ten_k_only_and_full_needed_names_both(monkeypatch, tmp_path):
    monkeypatch.setenv(fetch.OFFLINE_VAR, "1")
    folder = tmp_path / "root" / "mnist-10k"
    folder.mkdir(parents=True)
    for stem, a in (("t10k-images-idx3-ubyte", np.zeros((10_000, 28, 28), np.uint8)),
                    ("t10k-labels-idx1-ubyte", np.zeros(10_000, np.uint8))):
        (folder / stem).write_bytes(encode_idx(a))
    monkeypatch.setenv("VOLBENCH_DATA", str(tmp_path / "root"))
    assert fetch.ensure("mnist").variant == "mnist-10k", "the 10k pair is enough when full is not needed"
    with pytest.raises(fetch.FetchError) as err:
        fetch.ensure("mnist", full=True)
    assert "only mnist-10k found" in err.value.reason and "full set not found" in err.value.reason


# ------------------------------------------------------------------------------------- networks
def test_unreachable_host_fails_within_seconds_and_is_remembered(monkeypatch):
    calls = []

    def hang(address, timeout=None):  # a firewall that drops packets, or a DNS server that never answers
        calls.append(address)
        time.sleep(30)
        raise OSError("timed out")

    monkeypatch.setattr(download.socket, "create_connection", hang)
    t0 = time.monotonic()
    with pytest.raises(DownloadError, match="cannot reach example.invalid:443"):
        check_reachable("https://example.invalid/x.gz", timeout=0.5)
    assert time.monotonic() - t0 < 3.0, "the probe is bounded by its timeout"
    t1 = time.monotonic()
    with pytest.raises(DownloadError, match="s ago"):
        download_file("https://example.invalid/y.gz", Path(os.devnull).parent / "unused", sha256="0" * 64)
    assert time.monotonic() - t1 < 0.5 and len(calls) == 1, "a host found unreachable is not probed again"


def test_proxy_is_probed_instead_of_the_host(monkeypatch):
    seen = []
    monkeypatch.setenv("https_proxy", "http://proxy.local:3128")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.setattr(download.socket, "create_connection", lambda a, timeout=None: seen.append(a) or socket.socket())
    check_reachable("https://ossci-datasets.s3.amazonaws.com/mnist/x.gz")
    assert seen == [("proxy.local", 3128)]
    check_reachable((Path("/") / "x").as_uri())  # file:// needs no probe
    assert len(seen) == 1


def test_no_network_case_reason_within_seconds(monkeypatch):
    """The real path without a network (CI reaches only package registries): fails fast, and the
    reason says what to do."""
    monkeypatch.setattr(download, "CONNECT_TIMEOUT", 1.0)
    monkeypatch.setattr(fetch, "FASHION_MNIST_MIRRORS", ("http://10.255.255.1/",))
    monkeypatch.setattr(fetch, "SOURCES", {**fetch.SOURCES, "fashion_mnist": fetch.Source(
        "fashion_mnist", "fashion-mnist", fetch._IDX_GZ, ("http://10.255.255.1/",), debian="dataset-fashion-mnist",
        system_dir="/usr/share/datasets/fashion-mnist")})
    t0 = time.monotonic()
    with pytest.raises(fetch.FetchError) as err:
        fetch.ensure("fashion_mnist", progress=False)
    assert time.monotonic() - t0 < 10.0
    assert "download failed" in err.value.reason and "apt-get install dataset-fashion-mnist" in err.value.reason


# ------------------------------------------------------------------------------------ downloads
def test_corrupt_download_is_deleted_and_reported(server, tmp_path):
    served, url = server
    (served / "f.bin").write_bytes(b"not what was promised")
    expected = _sha(b"the real thing")
    dest = tmp_path / "out" / "f.bin"
    with pytest.raises(ChecksumError) as err:
        download_file(url + "f.bin", dest, sha256=expected)
    assert expected in str(err.value) and _sha(b"not what was promised") in str(err.value)
    assert not dest.exists() and not list(dest.parent.glob(".*part")), "the corrupt file is deleted"


def test_cut_short_transfer_leaves_no_partial_file(server, tmp_path):
    served, url = server
    data = os.urandom(200_000)
    (served / "big.bin").write_bytes(data)
    dest = tmp_path / "out" / "big.bin"
    with pytest.raises(DownloadError, match="broke off"):
        download_file(url + "short/big.bin", dest, sha256=_sha(data))
    assert not dest.exists() and not list(dest.parent.glob(".*part"))
    assert download_file(url + "big.bin", dest, sha256=_sha(data)).read_bytes() == data


_KILLED = textwrap.dedent('''
    import sys
    from volbench.data.download import download_file
    download_file(sys.argv[1], sys.argv[2], sha256=sys.argv[3])
''')


def test_killed_download_leaves_no_file_and_the_next_one_cleans_up(server, tmp_path):
    served, url = server
    data = os.urandom(40 * 1024)  # 8 s at the slow server's pace: plenty of time to kill it mid-way
    (served / "slow.bin").write_bytes(data)
    dest = tmp_path / "out" / "slow.bin"
    child = subprocess.Popen([sys.executable, "-c", _KILLED, url + "slow/slow.bin", str(dest), _sha(data)])
    deadline = time.monotonic() + 240  # the child imports torch first: slow on a busy machine
    while (not list(dest.parent.glob(".slow.bin.*.part"))
           or list(dest.parent.glob(".slow.bin.*.part"))[0].stat().st_size < 2048):
        assert time.monotonic() < deadline and child.poll() is None, "the download should be under way"
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert not dest.exists(), "a killed download never leaves a file under the final name"
    assert list(dest.parent.glob(".slow.bin.*.part")), "(a hard kill leaves the temporary file...)"
    assert download_file(url + "slow.bin", dest, sha256=_sha(data)).read_bytes() == data
    assert not list(dest.parent.glob(".slow.bin.*.part")), "...which the next download removes"


def test_full_disk_during_download_names_the_file_and_what_was_kept(server, tmp_path, monkeypatch):
    if not Path("/dev/full").exists():
        pytest.skip("/dev/full is not available")
    served, url = server
    data = os.urandom(5000)
    (served / "a.bin").write_bytes(data)
    (served / "b.bin").write_bytes(data)
    out = tmp_path / "out"
    download_file(url + "a.bin", out / "a.bin", sha256=_sha(data))
    real_mkstemp = download.tempfile.mkstemp

    def full_mkstemp(*args, **kwargs):  # the temporary file the download writes is /dev/full
        fd, name = real_mkstemp(*args, **kwargs)
        os.close(fd)
        return os.open("/dev/full", os.O_WRONLY), name

    monkeypatch.setattr(download.tempfile, "mkstemp", full_mkstemp)
    with pytest.raises(OSError) as err:
        download_file(url + "b.bin", out / "b.bin", sha256=_sha(data))
    assert err.value.errno == errno.ENOSPC
    msg = str(err.value)
    assert str(out / "b.bin") in msg and "no partial file was left" in msg and "were kept" in msg and "Fix:" in msg
    assert (out / "a.bin").read_bytes() == data and not (out / "b.bin").exists()
    assert not list(out.glob(".*part"))


# -------------------------------------------------------------------------------------- fetch
def test_fetch_cifar10_extracts_the_verified_archive(tmp_path, monkeypatch, isolated):
    fake_root = tmp_path / "fake"
    fixtures.write_synthetic("cifar10", fake_root, n_train=10, n_test=4)
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(fake_root / "cifar10" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    monkeypatch.setattr(fetch, "CIFAR10_URL", archive.as_uri())
    monkeypatch.setattr(fetch, "CIFAR10_SHA256", _sha(archive.read_bytes()))
    folder = fetch.fetch("cifar10", progress=False)
    assert folder == isolated / "cifar10" / "cifar-10-batches-py"
    assert not (isolated / "cifar10" / "cifar-10-python.tar.gz").exists(), "the archive goes once extracted"
    assert load("cifar10").n_train == 10 and fetch.status("cifar10").folder == folder
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/../../escape")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    monkeypatch.setattr(fetch, "CIFAR10_URL", evil.as_uri())
    monkeypatch.setattr(fetch, "CIFAR10_SHA256", _sha(evil.read_bytes()))
    with pytest.raises(ChecksumError, match="outside"):
        fetch.fetch("cifar10", progress=False)
    assert not (tmp_path / "escape").exists()


def test_fetch_svhn_and_idx_from_local_mirrors(server, monkeypatch, isolated):
    served, url = server
    src = fixtures.write_synthetic("svhn", served.parent / "gen", n_train=8, n_test=4)
    for f in ("train_32x32.mat", "test_32x32.mat"):
        (served / f).write_bytes((src / f).read_bytes())
    monkeypatch.setattr(images, "SVHN_CHECKSUMS",
                        {f: _sha((served / f).read_bytes()) for f in ("train_32x32.mat", "test_32x32.mat")})
    folder = fetch.fetch("svhn", mirrors=[url], progress=False)
    assert folder == isolated / "svhn" and load("svhn").n_train == 8
    assert load("svhn").meta["files"]["train_32x32.mat"]["verified"] == "file"
    with pytest.raises(fetch.FetchError, match="needs no download"):
        fetch.fetch("digits")
    with pytest.raises(fetch.FetchError, match="unknown data set"):
        fetch.fetch("imagenet")


def test_data_cli_list_and_fetch(monkeypatch, capsys, tmp_path):
    fixtures.write_synthetic("svhn", tmp_path / "r", n_train=4, n_test=2)
    assert main(["data", "list", "--root", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "svhn-cropped-synthetic" in out and "generated test fixture" in out and "missing" in out
    assert "volbench data fetch cifar10" in out, "a missing data set says how to get it"
    monkeypatch.setenv(fetch.OFFLINE_VAR, "1")
    assert main(["data", "fetch", "mnist"]) == 1
    assert "VOLBENCH_OFFLINE=1 forbids downloads" in capsys.readouterr().err
    assert main(["data"]) == 2


# ------------------------------------------------------------------------------ synthetic data
@pytest.mark.parametrize("name", fixtures.IMAGE_SETS)  # the text stand-in: tests/test_sequence.py
def test_synthetic_stand_ins_load_through_the_real_loaders_and_say_so(name, tmp_path):
    folder = fixtures.write_synthetic(name, tmp_path, n_train=20, n_test=10, seed=3)
    assert fixtures._MARKER == images.SYNTHETIC_MARKER
    ds = load(name, root=tmp_path)
    assert ds.variant.endswith("-synthetic") and (ds.n_train, ds.n_test) == (20, 10)
    assert ds.meta["synthetic"]["note"].startswith("generated test fixture")
    assert {f["verified"] for f in ds.meta["files"].values()} == {"synthetic"}
    assert sorted(ds.train_labels.unique().tolist()) == list(range(10)), "every class present"
    assert fetch.status(name, tmp_path).variant == ds.variant
    # An altered fixture is caught by the sums its generator recorded.
    victim = next(p for p in sorted(folder.iterdir()) if p.name != images.SYNTHETIC_MARKER)
    victim.write_bytes(victim.read_bytes()[:-1] + bytes([victim.read_bytes()[-1] ^ 1]))
    with pytest.raises((ChecksumError, ValueError)):
        load(name, root=tmp_path)


def test_synthetic_files_are_never_taken_for_the_real_data(tmp_path):
    """Without the marker, generated MNIST files meet the real checksums and are refused."""
    folder = fixtures.write_synthetic("mnist", tmp_path, n_train=20, n_test=10)
    (folder / images.SYNTHETIC_MARKER).unlink()
    with pytest.raises(ChecksumError, match="unpacked content"):
        load("mnist", root=tmp_path)


def test_auto_prefers_a_full_set_in_a_later_root(tmp_path):
    ten_k = tmp_path / "a" / "mnist-10k"
    ten_k.mkdir(parents=True)
    for stem, a in (("t10k-images-idx3-ubyte", np.zeros((10_000, 28, 28), np.uint8)),
                    ("t10k-labels-idx1-ubyte", np.zeros(10_000, np.uint8))):
        (ten_k / stem).write_bytes(gzip.compress(encode_idx(a)))
    fixtures.write_synthetic("mnist", tmp_path / "b", n_train=20, n_test=10)
    hit = images.locate_idx("mnist", [tmp_path / "a", tmp_path / "b"])
    assert hit[0] == "full" and hit[1] == tmp_path / "b" / "mnist"
    assert images.locate_idx("mnist", [tmp_path / "a", tmp_path / "b"], variant="10k")[1] == ten_k
