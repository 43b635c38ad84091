"""Lossless codecs and the frame-file container of the prepared store (see store.py).

A frame file holds every stored per-pixel field of one frame as independent chunks, one per (field, camera),
so that a reader decodes only the fields and cameras it asks for. Layout (little endian):

    8 bytes   magic b"SLBFRM01"
    u32       number of chunks N
    u64 x N   byte length of each chunk, in the order the manifest lists them (fields outer, cameras inner)
    bytes     the chunks, back to back

Each chunk is one zstd frame (with its content checksum, so a flipped bit fails on read) of the camera's
[H,W,...] array after a cheap, exactly invertible transform chosen per field:

    sparse        the non-zero pixels only (a pixel is zero when every byte of it is zero, so -0.0 and NaN
                  are kept): u32 count N, N u32 index deltas (first delta = first flat pixel index), then
                  the N pixel values [N,C] as they are. Decoding scatters N values into a zeroed output and
                  can rotate [N,3] vectors on the way (re-anchoring flow touches only moving pixels).
    u8-rowdelta   uint8 images: each row minus the row above (mod 256); smooth images give small residuals
    shuffle       4-byte values (float32, int32): bytes of equal significance grouped together (read only:
                  written by no field now, kept so that older stores stay readable)
    packbits      bool masks: 8 pixels per byte (read only, as shuffle)
    raw           bytes as they are

Decoding writes straight into a caller-provided slot of the output window (no per-frame arrays).
"""

from __future__ import annotations

import itertools
import struct
import threading

import numpy as np
import zstandard

from slarm_bench import geometry
from slarm_bench.errors import StoreError

MAGIC = b"SLBFRM01"
_HEADER = struct.Struct("<8sI")

# Field -> transform written by this version (readers accept every transform above, whatever the field).
# Measured on 160x240 synthetic frames (benchmarks/bench_store.py), CPU per 20-frame 3-camera window:
# flow is zero on every static surface (97% of pixels) and must be rotated on every re-anchored load:
# raw 6 ms to decode + 20 ms to rotate, sparse 4 ms for both. Lidar depth (20% non-zero) decodes as fast
# sparse as raw and stays sparse at lower densities. Masks, labels and instance ids decode fastest raw (their
# zero runs are cheap for zstd and a scatter costs more); byte shuffling and bit packing made chunks larger or
# no smaller. Only images may get a predictor.
FIELD_TRANSFORMS: dict[str, str] = {
    "images": "u8-rowdelta",
    "depth": "sparse",
    "depth_dense": "raw",
    "flow": "sparse",
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
    if transform == "sparse":
        pixels = _pixels(arr)
        words = pixels.view(np.dtype(f"u{arr.dtype.itemsize}")) if arr.dtype.itemsize in (1, 2, 4, 8) \
            else pixels.view(np.uint8)
        index = np.flatnonzero((words != 0).any(axis=1))
        if pixels.shape[0] > np.iinfo(np.uint32).max:
            raise StoreError(f"the sparse codec takes at most 2**32 pixels per image, got {pixels.shape[0]}")
        deltas = np.diff(index, prepend=0).astype("<u4")
        return b"".join([np.uint32(index.size).astype("<u4").tobytes(), deltas.tobytes(),
                         pixels[index].tobytes()])
    if transform == "shuffle":
        if arr.dtype.itemsize != 4:
            raise StoreError(f"the shuffle codec needs 4-byte values, got {arr.dtype}")
        return np.ascontiguousarray(arr.view(np.uint8).reshape(-1, 4).T).tobytes()
    if transform == "packbits":
        return np.packbits(arr.reshape(-1)).tobytes()
    if transform == "raw":
        return arr.tobytes()
    raise StoreError(f"unknown store transform {transform!r}: this slarm-bench is too old for this store")


def _pixels(arr: np.ndarray) -> np.ndarray:
    """[H,W] or [H,W,C] as [H*W, C] (a view of a C-contiguous array)."""
    return arr.reshape(arr.shape[0] * arr.shape[1], -1)


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


def is_sparse(codec: str) -> bool:
    """True when `codec` writes only non-zero pixels: decode_chunk is fastest into zeroed output then."""
    return codec.partition("+")[0] == "sparse"


def decode_chunk(codec: str, data: bytes | memoryview, out: np.ndarray, zeroed: bool = False,
                 rotation: np.ndarray | None = None) -> np.ndarray | None:
    """Decompress a chunk written with `codec` into `out` (C-contiguous, the chunk's dtype and shape).

    Returns the flat indices [N] (intp) of the pixels a sparse chunk wrote (None for other codecs).
    zeroed=True promises that `out` holds zeros already (a sparse chunk then writes its non-zero pixels only).
    rotation [3,3] rotates the [H,W,3] vectors with geometry.rotate_vectors (the same float64 arithmetic per
    pixel, so values equal those of rotating the decoded array; a zero vector stays +0.0).
    Raises ValueError when the bytes are corrupt or of the wrong size; the caller names the file.
    """
    transform, _, entropy = codec.partition("+")
    if entropy != "zstd":
        raise StoreError(f"unknown store codec {codec!r}: this slarm-bench is too old for this store")
    if not out.flags.c_contiguous:  # a reshape would decode into a silent copy
        raise StoreError("decode_chunk writes into C-contiguous arrays only: pass a contiguous slot")
    if rotation is not None and (out.ndim != 3 or out.shape[-1] != 3):
        raise StoreError(f"rotation applies to [H,W,3] vectors, not an array of shape {list(out.shape)}")
    try:
        if transform == "raw" or transform == "u8-rowdelta":
            # Decompress straight into the output: no intermediate bytes object, no copy.
            _read_into(data, out)
            if transform == "u8-rowdelta":
                _undo_rowdelta(out)
        elif transform == "sparse":
            return _decode_sparse(_decompressor().decompress(data), out, zeroed, rotation)
        else:
            raw = _decompressor().decompress(data)
            expected = _encoded_size(transform, out)
            if len(raw) != expected:
                raise ValueError(f"corrupt: a chunk decodes to {len(raw)} bytes, expected {expected}")
            _inverse(transform, raw, out)
    except zstandard.ZstdError as exc:
        raise ValueError(f"corrupt: a chunk fails to decompress ({exc})") from exc
    if rotation is not None:  # a dense flow chunk (stores written before flow was sparse)
        out[...] = geometry.rotate_vectors(rotation, out)
    return None


ROTATION_BLOCK = 256


def rotate_scattered(parts: list[tuple[np.ndarray, np.ndarray]], rotation: np.ndarray) -> None:
    """Rotate in place the vectors at flat pixel indices `index` of each [H,W,3] `slot` in `parts`
    ((slot, index) pairs, as decode_chunk returns them), all in one geometry.rotate_vectors call.

    One call instead of one per chunk: numpy's matmul does not run in parallel from several threads (about
    0.75x the speed of one thread here), so decoding threads leave rotation to the caller. The vectors go
    in as a stack of [ROTATION_BLOCK,3] matrices, the shape of image rows that a whole-array rotate_vectors
    sees: one large matrix would wake OpenBLAS's own threads, which then spin and double the CPU time.
    """
    if not parts:
        return
    dtype = parts[0][0].dtype
    item = np.dtype((np.void, 3 * dtype.itemsize))
    views = [slot.reshape(-1, 3).view(item).reshape(-1) for slot, _ in parts]
    total = sum(index.size for _, index in parts)
    gathered = np.zeros(-(-total // ROTATION_BLOCK) * ROTATION_BLOCK, item)
    np.concatenate([view[index] for view, (_, index) in zip(views, parts)], out=gathered[:total])
    stacked = gathered.view(dtype).reshape(-1, ROTATION_BLOCK, 3)
    rotated = geometry.rotate_vectors(rotation, stacked).reshape(-1, 3)[:total]
    rotated = np.ascontiguousarray(rotated).view(item).reshape(-1)
    start = 0
    for view, (_, index) in zip(views, parts):
        view[index] = rotated[start:start + index.size]
        start += index.size


def _decode_sparse(raw: bytes, out: np.ndarray, zeroed: bool, rotation: np.ndarray | None) -> np.ndarray:
    pixels = _pixels(out)
    num_pixels, channels = pixels.shape
    n = int.from_bytes(raw[:4], "little")
    expected = 4 + 4 * n + n * channels * out.itemsize
    if len(raw) != expected or len(raw) < 4:
        raise ValueError(f"corrupt: a sparse chunk decodes to {len(raw)} bytes, expected {expected}")
    if not zeroed:
        out.fill(0)
    if n == 0:
        return np.empty(0, np.intp)
    # Deltas are unsigned, so the last index is the largest: one bounds check covers them all. (A zero
    # delta after the first would repeat a pixel; only a writer bug could make one that passes the zstd
    # checksum, so it is not scanned for.)
    index = np.cumsum(np.frombuffer(raw, "<u4", n, 4), dtype=np.intp)
    if index[-1] >= num_pixels:
        raise ValueError(f"corrupt: a sparse chunk holds pixel index {index[-1]} of an image of {num_pixels}")
    values = np.frombuffer(raw, out.dtype, n * channels, 4 + 4 * n)
    if channels == 1:
        pixels.reshape(-1)[index] = values
        return index
    values = values.reshape(n, channels)
    if rotation is not None:
        values = geometry.rotate_vectors(rotation, values)
    # One opaque item per pixel: an index assignment of [N] items is about 10x faster than of [N,C] rows.
    item = np.dtype((np.void, channels * out.itemsize))
    pixels.view(item).reshape(-1)[index] = np.ascontiguousarray(values).view(item).reshape(-1)
    return index


def _read_into(data: bytes | memoryview, out: np.ndarray) -> None:
    reader = _decompressor().stream_reader(data, read_across_frames=False)
    filled = reader.readinto(out)  # any C-contiguous array takes the bytes as they are
    if filled < out.nbytes:
        dest = memoryview(out.reshape(-1).view(np.uint8))
        while filled < out.nbytes:
            got = reader.readinto(dest[filled:])
            if not got:
                raise ValueError(f"corrupt: a chunk decodes to {filled} bytes, expected {out.nbytes}")
            filled += got
    if reader.read(1):
        raise ValueError(f"corrupt: a chunk decodes to more than the expected {out.nbytes} bytes")


def _undo_rowdelta(out: np.ndarray) -> None:
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
    # Plain ints: a frame has a few dozen chunks, too few for numpy to pay off.
    ends = list(itertools.accumulate(struct.unpack_from(f"<{n}Q", data, _HEADER.size), initial=table_end))
    if len(data) != ends[-1]:
        state = "truncated" if len(data) < ends[-1] else "longer than its chunk table says"
        raise ValueError(f"{state} ({len(data)} bytes, expected {ends[-1]})")
    view = memoryview(data)
    return [view[a:b] for a, b in zip(ends, ends[1:])]
