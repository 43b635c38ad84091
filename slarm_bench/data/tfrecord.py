"""TFRecord files without TensorFlow: framing, CRC-32C checks, reading and writing.

A TFRecord file is a sequence of records, each framed as

    uint64 length (little endian) | uint32 masked_crc32c(length bytes) | data | uint32 masked_crc32c(data)

where masked_crc32c(x) = ((crc >> 15) | (crc << 17)) + 0xA282EAD8 (mod 2^32) of the CRC-32C (Castagnoli)
of x. The CRC here is computed in numpy: a record is cut into equal chunks whose raw CRCs are advanced one
byte at a time for all chunks at once, then folded together with "advance by n zero bytes" operators (the
CRC register update is linear over GF(2)), so a 1 MB record costs a few hundred vectorised steps instead of
a million Python ones. `google_crc32c` is used instead when it is installed (identical results, faster).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np

from slarm_bench.errors import SlarmBenchError

_POLY = 0x82F63B78  # CRC-32C (Castagnoli), reflected
_MASK_DELTA = 0xA282EAD8
_HEADER = struct.Struct("<QI")
_FOOTER = struct.Struct("<I")
_CHUNK = 128  # bytes per chunk in the vectorised CRC (a power of two)


class TFRecordError(SlarmBenchError):
    """A TFRecord file that is truncated or whose checksums do not match."""


def _make_table() -> np.ndarray:
    table = np.zeros(256, np.uint32)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ _POLY if c & 1 else c >> 1
        table[i] = c
    return table


_TABLE = _make_table()
_TABLE_LIST = [int(x) for x in _TABLE]


def _crc_update_py(reg: int, data: bytes) -> int:
    table = _TABLE_LIST
    for b in data:
        reg = table[(reg ^ b) & 0xFF] ^ (reg >> 8)
    return reg


def _apply_op(op: np.ndarray, regs: np.ndarray) -> np.ndarray:
    """Apply a GF(2)-linear 32-bit operator stored as 4 byte tables [4,256] to registers [N] (uint32)."""
    return (op[0][regs & 0xFF] ^ op[1][(regs >> 8) & 0xFF] ^ op[2][(regs >> 16) & 0xFF]
            ^ op[3][regs >> 24])


def _op_from_basis(images: np.ndarray) -> np.ndarray:
    """Byte tables [4,256] of the linear operator whose images of the 32 unit vectors are `images` [32]."""
    values = np.arange(256, dtype=np.uint32)
    bits = ((values[:, None] >> np.arange(8, dtype=np.uint32)[None]) & 1).astype(bool)  # [256, 8]
    op = np.zeros((4, 256), np.uint32)
    for k in range(4):
        sel = np.where(bits, images[None, 8 * k:8 * k + 8], np.uint32(0))
        op[k] = np.bitwise_xor.reduce(sel, axis=1)
    return op


@lru_cache(maxsize=64)
def _zeros_op(log2_bytes: int) -> np.ndarray:
    """Operator advancing a raw CRC register over 2**log2_bytes zero bytes."""
    if log2_bytes == 0:
        basis = np.uint32(1) << np.arange(32, dtype=np.uint32)
        images = _TABLE[basis & 0xFF] ^ (basis >> 8)
        return _op_from_basis(images)
    half = _zeros_op(log2_bytes - 1)
    basis = np.uint32(1) << np.arange(32, dtype=np.uint32)
    return _op_from_basis(_apply_op(half, _apply_op(half, basis)))


def _advance_zeros(regs: np.ndarray, n: int) -> np.ndarray:
    bit = 0
    while n:
        if n & 1:
            regs = _apply_op(_zeros_op(bit), regs)
        n >>= 1
        bit += 1
    return regs


def _crc32c_numpy(data: bytes) -> int:
    n = len(data)
    if n <= 4 * _CHUNK:
        return _crc_update_py(0xFFFFFFFF, data) ^ 0xFFFFFFFF
    chunks = -(-n // _CHUNK)
    chunks_pow2 = 1 << (chunks - 1).bit_length()
    # Leading zero bytes leave a zero raw register unchanged, so left padding does not alter raw CRCs.
    buf = np.zeros(chunks_pow2 * _CHUNK, np.uint8)
    buf[buf.size - n:] = np.frombuffer(data, np.uint8)
    cols = buf.reshape(chunks_pow2, _CHUNK).T.astype(np.uint32)  # [CHUNK, K], contiguous per step
    regs = np.zeros(chunks_pow2, np.uint32)
    table = _TABLE
    for step in cols:
        regs = table[(regs ^ step) & 0xFF] ^ (regs >> 8)
    level = _CHUNK.bit_length() - 1
    while regs.size > 1:
        regs = _apply_op(_zeros_op(level), regs[0::2]) ^ regs[1::2]
        level += 1
    init = _advance_zeros(np.array([0xFFFFFFFF], np.uint32), n)
    return int(regs[0] ^ init[0]) ^ 0xFFFFFFFF


try:  # optional accelerator; same values
    import google_crc32c as _gcrc  # type: ignore[import-not-found]
except ImportError:  # the numpy path below is exact, only slower
    _gcrc = None


def crc32c(data: bytes | bytearray | memoryview) -> int:
    """CRC-32C (Castagnoli) of `data`, as used by TFRecord, iSCSI and ext4."""
    data = bytes(data)
    if _gcrc is not None:
        return int(_gcrc.value(data))
    return _crc32c_numpy(data)


def masked_crc32c(data: bytes | bytearray | memoryview) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def read_records(path: str | os.PathLike, check_crc: bool = True) -> Iterator[bytes]:
    """Yield the payload of every record of a TFRecord file, verifying both checksums of each.

    Raises TFRecordError naming the file and the record index on truncation or checksum mismatch.
    """
    path = Path(path)
    with open(path, "rb") as f:
        index = 0
        while True:
            header = f.read(_HEADER.size)
            if not header:
                return
            if len(header) < _HEADER.size:
                raise TFRecordError(f"{path}: record {index} is truncated (header of {len(header)} of "
                                    f"{_HEADER.size} bytes); re-download the file")
            length, length_crc = _HEADER.unpack(header)
            if check_crc and masked_crc32c(header[:8]) != length_crc:
                raise TFRecordError(f"{path}: record {index} has a corrupt length field (CRC mismatch); "
                                    "re-download the file")
            data = f.read(length)
            footer = f.read(_FOOTER.size)
            if len(data) < length or len(footer) < _FOOTER.size:
                raise TFRecordError(f"{path}: record {index} is truncated ({len(data)} of {length} data "
                                    "bytes); re-download the file")
            if check_crc and masked_crc32c(data) != _FOOTER.unpack(footer)[0]:
                raise TFRecordError(f"{path}: record {index} is corrupt (data CRC mismatch); "
                                    "re-download the file")
            yield data
            index += 1


def encode_record(data: bytes) -> bytes:
    """One framed record (length, its masked CRC, data, data's masked CRC)."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc32c(length)) + data + struct.pack("<I", masked_crc32c(data))


def write_records(path: str | os.PathLike, records: list[bytes] | Iterator[bytes]) -> None:
    """Write payloads as a TFRecord file (uncompressed), e.g. to build test fixtures."""
    with open(path, "wb") as f:
        for data in records:
            f.write(encode_record(data))
