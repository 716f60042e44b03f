"""The sans-I/O RESP reader and command encoder: plain synchronous tests."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trioclient._resp import NEED_MORE, RespError, RespProtocolError, RespReader, encode_command


def read_all(reader: RespReader) -> list[Any]:
    out = []
    while (value := reader.gets()) is not NEED_MORE:
        out.append(value)
    return out


def test_each_resp2_type() -> None:
    reader = RespReader()
    reader.feed(
        b"+OK\r\n-NOSCRIPT No matching script\r\n:-42\r\n$5\r\nhello\r\n$0\r\n\r\n"
        b"$-1\r\n*-1\r\n*3\r\n:1\r\n$2\r\nab\r\n*1\r\n+x\r\n*0\r\n"
    )
    assert read_all(reader) == [
        "OK",
        RespError("NOSCRIPT No matching script"),
        -42,
        b"hello",
        b"",
        None,
        None,
        [1, b"ab", ["x"]],
        [],
    ]


def test_error_code_is_the_first_word() -> None:
    assert RespError("NOSCRIPT No matching script").code == "NOSCRIPT"
    assert RespError("ERR").code == "ERR"


def test_each_resp3_type() -> None:
    reader = RespReader()
    reader.feed(
        b"_\r\n#t\r\n#f\r\n,3.5\r\n(12345678901234567890\r\n!5\r\nERR x\r\n"
        b"=8\r\ntxt:abcd\r\n%2\r\n+a\r\n:1\r\n+b\r\n*1\r\n:2\r\n~2\r\n:1\r\n:2\r\n>1\r\n+p\r\n"
    )
    assert read_all(reader) == [
        None,
        True,
        False,
        3.5,
        12345678901234567890,
        RespError("ERR x"),
        b"abcd",
        {"a": 1, "b": [2]},
        [1, 2],
        ["p"],
    ]


def test_binary_bulk_with_crlf_inside() -> None:
    reader = RespReader()
    reader.feed(b"$4\r\n\r\n\r\n\r\n")
    assert reader.gets() == b"\r\n\r\n"
    assert reader.gets() is NEED_MORE


@pytest.mark.parametrize(
    "data",
    [
        b"?x\r\n",
        b":12a\r\n",
        b"$abc\r\n",
        b"$-2\r\n",
        b"*-5\r\n",
        b"$3\r\nabcXY",
        b"#x\r\n",
        b",notanumber\r\n",
        b"_junk\r\n",
    ],
)
def test_bytes_that_are_not_resp_raise(data: bytes) -> None:
    reader = RespReader()
    reader.feed(data)
    with pytest.raises(RespProtocolError):
        reader.gets()


def test_the_buffer_is_bounded() -> None:
    reader = RespReader(max_buffer=100)
    reader.feed(b"$1000\r\n")
    with pytest.raises(RespProtocolError, match="1000-byte string"):
        reader.gets()
    reader = RespReader(max_buffer=100)
    with pytest.raises(RespProtocolError, match="limit of 100"):
        reader.feed(b"+" + b"x" * 200)


def test_encode_command() -> None:
    assert encode_command("EVALSHA", b"ab", 1, 2.5, "k\u00e9") == (
        b"*5\r\n$7\r\nEVALSHA\r\n$2\r\nab\r\n$1\r\n1\r\n$3\r\n2.5\r\n$3\r\nk\xc3\xa9\r\n"
    )
    with pytest.raises(TypeError):
        encode_command("SET", True)
    with pytest.raises(TypeError):
        encode_command("SET", None)  # type: ignore[arg-type]


# -- property: any reply, split anywhere, parses to the same value --------------------


def to_resp(value: Any) -> bytes:
    """An independent writer for the values the reader produces (RESP2 forms)."""
    if value is None:
        return b"$-1\r\n"
    if isinstance(value, RespError):
        return b"-" + value.message.encode() + b"\r\n"
    if isinstance(value, str):
        return b"+" + value.encode() + b"\r\n"
    if isinstance(value, int):
        return b":" + str(value).encode() + b"\r\n"
    if isinstance(value, bytes):
        return b"$" + str(len(value)).encode() + b"\r\n" + value + b"\r\n"
    assert isinstance(value, list)
    return b"*" + str(len(value)).encode() + b"\r\n" + b"".join(to_resp(v) for v in value)


line_text = st.text(
    alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=20
)
leaves = (
    st.none()
    | st.integers()
    | st.binary(max_size=30)
    | line_text
    | line_text.map(lambda t: RespError("ERR " + t))
)
replies = st.recursive(leaves, lambda inner: st.lists(inner, max_size=5), max_leaves=20)


@given(values=st.lists(replies, min_size=1, max_size=5), cuts=st.lists(st.integers(0, 10_000)))
def test_replies_split_anywhere_parse_the_same(values: list[Any], cuts: list[int]) -> None:
    data = b"".join(to_resp(v) for v in values)
    points = sorted({c % (len(data) + 1) for c in cuts})
    reader = RespReader()
    got: list[Any] = []
    start = 0
    for point in [*points, len(data)]:
        reader.feed(data[start:point])
        start = point
        got.extend(read_all(reader))
    assert got == values
    assert reader.gets() is NEED_MORE


@given(value=replies)
def test_a_reply_short_of_its_last_byte_is_not_yet_a_reply(value: Any) -> None:
    data = to_resp(value)
    reader = RespReader()
    reader.feed(data[:-1])
    assert reader.gets() is NEED_MORE
    reader.feed(data[-1:])
    assert reader.gets() == value
