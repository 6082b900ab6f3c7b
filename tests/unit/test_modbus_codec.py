"""Register contents to twin values and back: types, byte and register swaps, scale, refusals."""

from __future__ import annotations

import struct

import pytest

from edge.mappers.modbus.codec import EncodeError, decode_bits, decode_words, encode_bits, encode_words
from edge.mappers.modbus.config import DataType, Register, VisitorConfig


def words(data: bytes) -> list[int]:
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


def holding(data_type: DataType, limit: int = 1, scale: float = 1.0, swap: bool = False,
            register_swap: bool = False) -> VisitorConfig:
    return VisitorConfig(Register.HOLDING, 0, data_type, limit, scale, swap, register_swap)


def test_int_of_one_two_and_four_registers_is_unsigned_big_endian() -> None:
    assert decode_words(holding(DataType.INT), [0xFFFE]) == "65534"
    assert decode_words(holding(DataType.INT, 2), [0x0001, 0x0002]) == str(0x00010002)
    assert decode_words(holding(DataType.INT, 4), [0xFFFF] * 4) == str(2**64 - 1)  # exact, not through a float


def test_scale_multiplies_and_an_int_is_truncated_toward_zero() -> None:
    assert decode_words(holding(DataType.INT, scale=0.1), [215]) == "21"
    assert decode_words(holding(DataType.FLOAT, 2, scale=10), words(struct.pack(">f", 2.5))) == "25.000000"


def test_byte_swap_register_swap_and_both() -> None:
    data = struct.pack(">f", 21.5)  # 41 AC 00 00
    abcd = words(data)
    assert decode_words(holding(DataType.FLOAT, 2), abcd) == "21.500000"
    cdab = words(data[2:] + data[:2])
    assert decode_words(holding(DataType.FLOAT, 2, register_swap=True), cdab) == "21.500000"
    badc = words(bytes([data[1], data[0], data[3], data[2]]))
    assert decode_words(holding(DataType.FLOAT, 2, swap=True), badc) == "21.500000"
    dcba = words(data[::-1])
    assert decode_words(holding(DataType.FLOAT, 2, swap=True, register_swap=True), dcba) == "21.500000"
    assert decode_words(holding(DataType.INT, swap=True), [0x0102]) == str(0x0201)


def test_double_boolean_and_string() -> None:
    assert decode_words(holding(DataType.DOUBLE, 4), words(struct.pack(">d", -1.25))) == "-1.250000"
    assert decode_words(holding(DataType.BOOLEAN), [1]) == "true"  # KubeEdge would read false here
    assert decode_words(holding(DataType.BOOLEAN, 2), [0, 0]) == "false"
    assert decode_words(holding(DataType.STRING, 3), words(b"ok\x00\x00\x00\x00")) == "ok"


def test_bits_read_as_boolean_or_as_int_with_the_first_coil_lowest() -> None:
    coil = VisitorConfig(Register.COIL, 0, DataType.BOOLEAN, 1)
    assert decode_bits(coil, [True]) == "true"
    assert decode_bits(coil, [False]) == "false"
    assert decode_bits(VisitorConfig(Register.DISCRETE_INPUT, 0, DataType.INT, 3), [True, False, True]) == "5"


@pytest.mark.parametrize(
    ("visitor", "value"),
    [
        (holding(DataType.INT), "1234"),
        (holding(DataType.INT, 2, swap=True, register_swap=True), "305419896"),
        (holding(DataType.INT, scale=0.1), "21.5"),
        (holding(DataType.FLOAT, 2, register_swap=True), "21.5"),
        (holding(DataType.DOUBLE, 4, swap=True), "-3.75"),
        (holding(DataType.BOOLEAN), "true"),
        (holding(DataType.STRING, 2), "abc"),
    ],
)
def test_encode_then_decode_gives_the_value_back(visitor: VisitorConfig, value: str) -> None:
    decoded = decode_words(visitor, encode_words(visitor, value))
    if visitor.data_type in (DataType.FLOAT, DataType.DOUBLE):
        assert float(decoded) == float(value)
    elif visitor.scale != 1:
        assert decoded == "21"  # 215 in the register, times 0.1, truncated as KubeEdge does
    else:
        assert decoded == value


def test_encoded_words_are_what_the_device_holds() -> None:
    assert encode_words(holding(DataType.INT, 2), "65536") == [1, 0]
    assert encode_words(holding(DataType.INT, 2, register_swap=True), "65536") == [0, 1]
    assert encode_words(holding(DataType.INT, swap=True), "1") == [0x0100]


def test_bits_encode() -> None:
    assert encode_bits(VisitorConfig(Register.COIL, 0, DataType.BOOLEAN), "1") == [True]
    assert encode_bits(VisitorConfig(Register.COIL, 0, DataType.BOOLEAN), "False") == [False]
    assert encode_bits(VisitorConfig(Register.COIL, 0, DataType.INT, 4), "6") == [False, True, True, False]


@pytest.mark.parametrize(
    ("visitor", "value", "message"),
    [
        (holding(DataType.INT), "-1", "outside the 16-bit unsigned range"),
        (holding(DataType.INT), "65536", "outside the 16-bit unsigned range"),
        (holding(DataType.INT), "1.5", "not a whole number"),
        (holding(DataType.INT), "ten", "is not a int"),
        (holding(DataType.FLOAT, 2), "1e300", "does not fit in a float"),
        (holding(DataType.FLOAT, 2), "nan", "not a finite float"),
        (holding(DataType.BOOLEAN), "maybe", "not a boolean"),
        (holding(DataType.STRING, 1), "abc", "3 bytes, 1 register"),
        (VisitorConfig(Register.COIL, 0, DataType.INT, 2), "4", "outside the 2-bit unsigned range"),
    ],
)
def test_values_the_registers_cannot_hold_are_refused(visitor: VisitorConfig, value: str, message: str) -> None:
    encode = encode_bits if visitor.register.is_bits else encode_words
    with pytest.raises(EncodeError, match=message):
        encode(visitor, value)
