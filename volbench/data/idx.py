"""IDX files (the MNIST / Fashion-MNIST format), raw or gzip-compressed, decoded with numpy.

IDX layout (LeCun et al., http://yann.lecun.com/exdb/mnist/): a big-endian header
``0x00 0x00 <type code> <ndim>``, then ``ndim`` big-endian uint32 dimension sizes, then the
data in C order. MNIST images are ``0x08`` (uint8), 3-D [N, 28, 28]; labels are uint8, 1-D [N].

Decoding is cached in-process, keyed by (path, mtime, size), so a test session that loads
MNIST ten times reads and hashes each file once. Cached arrays are read-only; loaders copy
them into fresh tensors.

Example:
    >>> import numpy as np
    >>> from volbench.data.idx import encode_idx, parse_idx
    >>> raw = encode_idx(np.arange(6, dtype=np.uint8).reshape(2, 3))
    >>> parse_idx(raw, name="example").tolist()
    [[0, 1, 2], [3, 4, 5]]
"""
from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import os
import zlib
from pathlib import Path
from types import MappingProxyType

import numpy as np

from volbench.data.dataset import ChecksumError

__all__ = ["IdxFile", "parse_idx", "encode_idx", "read_idx", "find_idx", "KnownChecksum", "verify"]

# IDX type codes -> big-endian numpy dtypes.
_IDX_TYPES = MappingProxyType({
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
})
_GZIP_MAGIC = b"\x1f\x8b"


def parse_idx(raw: bytes, *, name: str) -> np.ndarray:
    """Decode the bytes of an (uncompressed) IDX file into a read-only numpy array.

    Raises ValueError naming ``name`` if the header is malformed or the payload length does
    not match the declared shape (a truncated or padded file).
    """
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{name}: not an IDX file (the first two bytes must be zero); is it the right file?")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_TYPES:
        raise ValueError(f"{name}: unknown IDX type code 0x{code:02x}; expected one of "
                         f"{', '.join(f'0x{c:02x}' for c in _IDX_TYPES)}")
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise ValueError(f"{name}: IDX header declares {ndim} dimensions but the file has only {len(raw)} bytes")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_TYPES[code]
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(
            f"{name}: IDX header declares shape {shape} ({expected} bytes) but the file has {len(raw)} bytes; "
            "the file is truncated or corrupt - delete it and fetch it again"
        )
    arr = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    arr = arr.astype(dtype.newbyteorder("="), copy=False) if dtype.byteorder == ">" else arr
    arr.flags.writeable = False
    return arr


def encode_idx(array: np.ndarray) -> bytes:
    """Encode a numpy array as IDX bytes (used by tests and to write fixtures)."""
    array = np.asarray(array)
    for code, dt in _IDX_TYPES.items():
        if dt.kind == array.dtype.kind and dt.itemsize == array.dtype.itemsize:
            header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
            return header + np.ascontiguousarray(array, dtype=dt).tobytes()
    raise TypeError(f"IDX cannot store dtype {array.dtype}")


@dataclasses.dataclass(frozen=True)
class IdxFile:
    """A decoded IDX file: the array (read-only) and the SHA-256 of the file as stored and of
    its unpacked IDX content (the two differ for .gz files)."""

    path: str
    array: np.ndarray
    sha256_file: str
    sha256_content: str
    compressed: bool


@functools.lru_cache(maxsize=16)
def _read_idx_cached(path: str, mtime_ns: int, size: int) -> IdxFile:
    # mtime_ns and size are part of the cache key only: a rewritten file is decoded again.
    del mtime_ns, size
    with open(path, "rb") as f:
        stored = f.read()
    compressed = stored[:2] == _GZIP_MAGIC
    if compressed:
        try:
            raw = gzip.decompress(stored)
        except (OSError, EOFError, zlib.error) as e:  # bad CRC, truncated stream
            raise ValueError(f"{path}: the gzip stream is corrupt ({e}); delete the file and fetch it again") from e
    else:
        raw = stored
    arr = parse_idx(raw, name=path)
    return IdxFile(path=path, array=arr, sha256_file=hashlib.sha256(stored).hexdigest(),
                   sha256_content=hashlib.sha256(raw).hexdigest(), compressed=compressed)


def read_idx(path: str | os.PathLike[str]) -> IdxFile:
    """Read and decode one IDX file (gzip detected from its magic bytes, not its name)."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise FileNotFoundError(f"IDX file {p} does not exist") from None
    return _read_idx_cached(str(p.resolve()), st.st_mtime_ns, st.st_size)


def find_idx(folder: Path, stem: str) -> Path | None:
    """The file for ``stem`` (e.g. ``t10k-images-idx3-ubyte``) in ``folder``: the uncompressed
    file if present (faster to read), else ``stem + '.gz'``; None if neither exists."""
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


@dataclasses.dataclass(frozen=True)
class KnownChecksum:
    """Published SHA-256 sums for one IDX file: of the official archive (the .gz as the mirror
    serves it) and/or of the unpacked content. Either may be unknown (None)."""

    archive: str | None = None
    content: str | None = None
    provenance: str = ""


def verify(idx: IdxFile, known: KnownChecksum | None) -> dict[str, object]:
    """Check ``idx`` against ``known``; return a JSON-able record for ``Dataset.meta``.

    Accepted if the stored file is the official archive, or the unpacked content matches the
    known content checksum. A content mismatch raises ChecksumError naming the file, the
    expected and the actual checksum. Where nothing is known (or only the archive sum is known
    and the file was recompressed) the record says ``"unverified"``; the IDX header and gzip
    CRC checks still ran.
    """
    record: dict[str, object] = {
        "path": idx.path, "sha256_file": idx.sha256_file, "sha256_content": idx.sha256_content,
    }
    if known is not None and known.archive is not None and idx.sha256_file == known.archive:
        record["verified"] = "archive"
    elif known is not None and known.content is not None:
        if idx.sha256_content != known.content:
            raise ChecksumError(
                f"{idx.path}: SHA-256 of the unpacked content is {idx.sha256_content}, expected {known.content} "
                f"({known.provenance or 'known checksum'}). The file is corrupt or is not the expected data; "
                "delete it and fetch a fresh copy."
            )
        record["verified"] = "content"
    else:
        record["verified"] = "unverified"
    return record
