"""TFRecord framing and CRC-32C without TensorFlow."""

import os
import struct

import pytest

from slarm_bench.data import tfrecord
from slarm_bench.data.tfrecord import TFRecordError, crc32c, masked_crc32c, read_records, write_records
from slarm_bench.errors import SlarmBenchError


def test_crc32c_known_values():
    assert crc32c(b"") == 0
    assert crc32c(b"123456789") == 0xE3069283      # the CRC-32C check value
    assert crc32c(bytes(32)) == 0x8A9136AA          # RFC 3720 test vector: 32 zero bytes
    assert crc32c(bytes(range(32))) == 0x46DD794E   # RFC 3720: 0x00..0x1f


@pytest.mark.parametrize("n", [513, 1000, 4096, 65537, 300001])
def test_vectorised_crc_matches_bytewise(n):
    data = os.urandom(n)
    expected = tfrecord._crc_update_py(0xFFFFFFFF, data) ^ 0xFFFFFFFF
    assert tfrecord._crc32c_numpy(data) == expected


def test_masked_crc_of_tensorflow_length_header():
    # TensorFlow's own framing of an empty record: length 0 -> masked crc of 8 zero bytes.
    crc = crc32c(bytes(8))
    assert masked_crc32c(bytes(8)) == ((((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def test_round_trip(tmp_path):
    path = tmp_path / "a.tfrecord"
    payloads = [b"", b"x", os.urandom(5000)]
    write_records(path, payloads)
    assert list(read_records(path)) == payloads


def test_corrupt_data_names_file_and_record(tmp_path):
    path = tmp_path / "bad.tfrecord"
    write_records(path, [b"first record", b"second record"])
    raw = bytearray(path.read_bytes())
    second = 8 + 4 + len(b"first record") + 4
    raw[second + 12 + 3] ^= 0xFF                   # flip a data byte of record 1
    path.write_bytes(bytes(raw))
    with pytest.raises(TFRecordError, match=r"bad\.tfrecord: record 1 is corrupt") as info:
        list(read_records(path))
    assert isinstance(info.value, SlarmBenchError)
    assert list(read_records(path, check_crc=False))[1] != b"second record"


def test_corrupt_length_and_truncation(tmp_path):
    path = tmp_path / "t.tfrecord"
    write_records(path, [b"abcdef"])
    raw = bytearray(path.read_bytes())
    bad_len = bytearray(raw)
    bad_len[0:8] = struct.pack("<Q", 7)
    path.write_bytes(bytes(bad_len))
    with pytest.raises(TFRecordError, match="record 0 has a corrupt length"):
        list(read_records(path))
    path.write_bytes(bytes(raw[:-6]))
    with pytest.raises(TFRecordError, match="record 0 is truncated"):
        list(read_records(path))
    path.write_bytes(bytes(raw) + b"\x01\x02")
    with pytest.raises(TFRecordError, match="record 1 is truncated"):
        list(read_records(path))
