import math

import pytest

from raylive.runtime.rtmp import amf0


def test_round_trip_of_command_values() -> None:
    values = ["connect", 1.0, {"app": "live", "tcUrl": "rtmp://h/live", "fpad": False, "nested": {"a": None}}, None, [1.0, "x"]]
    assert amf0.decode(amf0.encode(*values)) == values


def test_ecma_array_long_string_and_undefined() -> None:
    meta = amf0.EcmaArray(width=640.0, height=360.0, encoder="Lavf")
    big = "x" * 70000
    out = amf0.decode(amf0.encode("onMetaData", meta, big, amf0.Undefined()))
    assert out[1] == meta and isinstance(out[1], amf0.EcmaArray)
    assert out[2] == big
    assert out[3] == amf0.Undefined()


def test_number_encoding_is_ieee_double() -> None:
    assert amf0.encode(1.5) == b"\x00\x3f\xf8\x00\x00\x00\x00\x00\x00"
    assert math.isnan(amf0.decode(amf0.encode(float("nan")))[0])


@pytest.mark.parametrize(
    "data",
    [
        b"\x02\x00\x05ab",  # string shorter than its length
        b"\x00\x01\x02",  # truncated number
        b"\x03\x00\x01a",  # object property without value
        b"\x0a\xff\xff\xff\xff",  # strict array claiming 4 billion items
        b"\x42",  # unknown marker
        b"\x02\x00\x02\xff\xfe",  # invalid UTF-8
    ],
)
def test_malformed_input_raises_amf0_error(data: bytes) -> None:
    with pytest.raises(amf0.Amf0Error):
        amf0.decode(data)


def test_nesting_bomb_is_refused_without_recursion_error() -> None:
    bomb = b"\x0a\x00\x00\x00\x01" * 10000  # arrays nested 10000 deep
    with pytest.raises(amf0.Amf0Error, match="nesting"):
        amf0.decode(bomb)
