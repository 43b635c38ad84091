"""Lossless codecs and the frame-file container of the prepared store (see store.py).

A frame file holds every stored per-pixel field of one frame as independent chunks, one per (field, camera),
so that a reader decodes only the fields and cameras it asks for. Layout (little endian):

    8 bytes   magic b"SLBFRM01"
    u32       number of chunks N
    u64 x N   byte length of each chunk, in the order the manifest lists them (fields outer, cameras inner)
    bytes     the chunks, back to back

Each chunk is one zstd frame (with its content checksum, so a flipped bit fails on read) of the camera's
[H,W,...] array after a cheap, exactly invertible transform chosen per field:

    u8-rowdelta   uint8 images: each row minus the row above (mod 256); smooth images give small residuals
    shuffle       4-byte values (float32, int32): bytes of equal significance grouped together, which turns
                  smooth depth and mostly-zero flow into long runs
    packbits      bool masks: 8 pixels per byte
    raw           bytes as they are (everything but images, see FIELD_TRANSFORMS)

Decoding writes straight into a caller-provided slot of the output window (no per-frame arrays).
"""

from __future__ import annotations

import struct
import threading

import numpy as np
import zstandard

from slarm_bench.errors import StoreError

MAGIC = b"SLBFRM01"
_HEADER = struct.Struct("<8sI")

# Field -> transform written by this version (readers accept every transform above, whatever the field).
# Measured on 160x240 frames (benchmarks/bench_store.py): plain zstd already turns sparse lidar depth,
# mostly-zero flow, masks stored one byte per pixel and label maps into long runs, and decodes fastest;
# byte shuffling and bit packing made those chunks larger or no smaller, so only images get a predictor.
FIELD_TRANSFORMS: dict[str, str] = {
    "images": "u8-rowdelta",
    "depth": "raw",
    "depth_dense": "raw",
    "flow": "raw",
    "sky": "raw",
    "dynamic": "raw",
    "ground": "raw",
    "dynamic_box": "raw",
    "semantic": "raw",
    "instance": "raw",
}
# Images get the row predictor only where it pays (real photographs: about 25% smaller); on flat-shaded
# synthetic images it saves about 3% and costs 70% more decode time: each sequence measures its first frame.
IMAGE_PREDICTOR_MIN_GAIN = 0.10


def choose_transform(field: str, sample: np.ndarray, level: int) -> str:
    """The transform to write `field` with, given one camera's array of the first frame."""
    if field != "images":
        return FIELD_TRANSFORMS[field]
    plain = len(encode_chunk(field, sample, level, transform="raw"))
    predicted = len(encode_chunk(field, sample, level, transform="u8-rowdelta"))
    return "u8-rowdelta" if predicted < (1 - IMAGE_PREDICTOR_MIN_GAIN) * plain else "raw"


# Decode speed barely depends on the level; 9 is close to the best ratio at a tolerable write cost.
DEFAULT_LEVEL = 9

_local = threading.local()


def codec_name(field: str, transform: str | None = None) -> str:
    return f"{transform or FIELD_TRANSFORMS[field]}+zstd"


def _compressor(level: int) -> zstandard.ZstdCompressor:
    cache = getattr(_local, "compressors", None)
    if cache is None:
        cache = _local.compressors = {}
    if level not in cache:
        cache[level] = zstandard.ZstdCompressor(level=level, write_checksum=True, write_content_size=True)
    return cache[level]


def _decompressor() -> zstandard.ZstdDecompressor:
    # zstandard contexts are not thread-safe: one per thread.
    dctx = getattr(_local, "dctx", None)
    if dctx is None:
        dctx = _local.dctx = zstandard.ZstdDecompressor()
    return dctx


# -- transforms -------------------------------------------------------------------------------------------
def _forward(transform: str, arr: np.ndarray) -> bytes:
    arr = np.ascontiguousarray(arr)
    if transform == "u8-rowdelta":
        rows = arr.reshape(arr.shape[0], -1)
        delta = rows.copy()
        np.subtract(rows[1:], rows[:-1], out=delta[1:])
        return delta.tobytes()
    if transform == "shuffle":
        if arr.dtype.itemsize != 4:
            raise StoreError(f"the shuffle codec needs 4-byte values, got {arr.dtype}")
        return np.ascontiguousarray(arr.view(np.uint8).reshape(-1, 4).T).tobytes()
    if transform == "packbits":
        return np.packbits(arr.reshape(-1)).tobytes()
    if transform == "raw":
        return arr.tobytes()
    raise StoreError(f"unknown store transform {transform!r}: this slarm-bench is too old for this store")


def _inverse(transform: str, data: bytes, out: np.ndarray) -> None:
    """Undo `transform` on decompressed `data`, writing into the C-contiguous array `out`."""
    if transform == "shuffle":
        planes = np.frombuffer(data, np.uint8).reshape(4, -1)
        dest = out.reshape(-1).view(np.uint8).reshape(-1, 4)
        # Four strided column writes beat one transposed copy by about 4x here.
        for i in range(4):
            dest[:, i] = planes[i]
        return
    if transform == "packbits":
        flat = out.reshape(-1)
        flat[...] = np.unpackbits(np.frombuffer(data, np.uint8), count=flat.size).view(np.bool_)
        return
    raise StoreError(f"unknown store transform {transform!r}: this slarm-bench is too old for this store")


def encode_chunk(field: str, arr: np.ndarray, level: int = DEFAULT_LEVEL,
                 transform: str | None = None) -> bytes:
    """Compress one camera's array of `field` ([H,W] or [H,W,3]) with its transform (or `transform`)."""
    return _compressor(level).compress(_forward(transform or FIELD_TRANSFORMS[field], arr))


def decode_chunk(codec: str, data: bytes | memoryview, out: np.ndarray) -> None:
    """Decompress a chunk written with `codec` into `out` (C-contiguous, the chunk's dtype and shape).

    Raises ValueError when the bytes are corrupt or of the wrong size; the caller names the file.
    """
    transform, _, entropy = codec.partition("+")
    if entropy != "zstd":
        raise StoreError(f"unknown store codec {codec!r}: this slarm-bench is too old for this store")
    expected = _encoded_size(transform, out)
    try:
        if transform in _IN_PLACE:
            # Decompress straight into the output: no intermediate bytes object, no copy.
            _read_into(data, memoryview(out.reshape(-1).view(np.uint8)))
            _inverse_in_place(transform, out)
            return
        raw = _decompressor().decompress(data)
    except zstandard.ZstdError as exc:
        raise ValueError(f"corrupt: a chunk fails to decompress ({exc})") from exc
    if len(raw) != expected:
        raise ValueError(f"corrupt: a chunk decodes to {len(raw)} bytes, expected {expected}")
    _inverse(transform, raw, out)


_IN_PLACE = ("raw", "u8-rowdelta")


def _read_into(data: bytes | memoryview, dest: memoryview) -> None:
    reader = _decompressor().stream_reader(data, read_across_frames=False)
    filled = 0
    while filled < dest.nbytes:
        got = reader.readinto(dest[filled:])
        if not got:
            raise ValueError(f"corrupt: a chunk decodes to {filled} bytes, expected {dest.nbytes}")
        filled += got
    if reader.read(1):
        raise ValueError(f"corrupt: a chunk decodes to more than the expected {dest.nbytes} bytes")


def _inverse_in_place(transform: str, out: np.ndarray) -> None:
    if transform == "u8-rowdelta":
        rows = out.reshape(out.shape[0], -1)
        # Prefix sum over rows by doubling: log2(H) vectorised adds instead of H small ones (about 5x
        # faster than np.cumsum along axis 0 on a 160x240x3 image). Overlap is handled by numpy.
        step = 1
        while step < rows.shape[0]:
            rows[step:] += rows[:-step]
            step *= 2


def _encoded_size(transform: str, out: np.ndarray) -> int:
    if transform == "packbits":
        return (out.size + 7) // 8
    return out.nbytes


# -- frame container --------------------------------------------------------------------------------------
def pack_frame(chunks: list[bytes]) -> bytes:
    """Frame-file bytes holding `chunks` (see the module docstring)."""
    lengths = np.array([len(c) for c in chunks], dtype="<u8")
    return b"".join([_HEADER.pack(MAGIC, len(chunks)), lengths.tobytes(), *chunks])


def unpack_frame(data: bytes, num_chunks: int) -> list[memoryview]:
    """Split frame-file bytes into chunks; ValueError (one line) when truncated or not a frame file."""
    if len(data) < _HEADER.size:
        raise ValueError(f"truncated ({len(data)} bytes, shorter than the header)")
    magic, n = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ValueError("not a slarm-bench frame file (bad magic bytes)")
    if n != num_chunks:
        raise ValueError(f"holds {n} chunks, the manifest expects {num_chunks}")
    table_end = _HEADER.size + 8 * n
    if len(data) < table_end:
        raise ValueError(f"truncated ({len(data)} bytes, shorter than its chunk table)")
    lengths = np.frombuffer(data, "<u8", count=n, offset=_HEADER.size)
    ends = table_end + np.cumsum(lengths, dtype=np.int64)
    total = int(ends[-1]) if n else table_end
    if len(data) != total:
        state = "truncated" if len(data) < total else "longer than its chunk table says"
        raise ValueError(f"{state} ({len(data)} bytes, expected {total})")
    view = memoryview(data)
    starts = np.concatenate([[table_end], ends[:-1]]) if n else []
    return [view[int(s):int(e)] for s, e in zip(starts, ends)]
