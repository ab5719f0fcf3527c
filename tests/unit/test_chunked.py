"""Chunked transfer coding: decoding, strictness, limits."""

import pytest

from brood.protocol.chunked import LAST_CHUNK, ChunkedDecoder, encode_chunk
from brood.protocol.errors import BadRequest, BadResponse, BodyTooLarge, HeadTooLarge

CAPTURED = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"  # httprouter_post_chunked_input_flag.bin


def decode(data: bytes, **kw) -> tuple[bytes, ChunkedDecoder]:
    decoder = ChunkedDecoder(**kw)
    return b"".join(decoder.feed(data)), decoder


def test_captured_body():
    body, decoder = decode(CAPTURED + b"GET /next")
    assert body == b"hello world"
    assert decoder.done and decoder.rest == b"GET /next"
    assert decoder.received == 11


def test_byte_at_a_time():
    decoder = ChunkedDecoder()
    pieces = []
    data = b"A;name=val\r\n0123456789\r\n1\r\nx\r\n0\r\nX-T: 1\r\n\r\nrest"
    for i in range(len(data)):
        pieces += decoder.feed(data[i : i + 1])
        assert decoder.done == (i >= len(data) - 5)
    assert b"".join(pieces) == b"0123456789x"
    assert decoder.rest == b"rest"


def test_feed_after_done_goes_to_rest():
    _, decoder = decode(LAST_CHUNK)
    assert decoder.feed(b"more") == [] and decoder.rest == b"more"


def test_encode():
    assert encode_chunk(b"hello") == b"5\r\nhello\r\n"
    assert encode_chunk(b"") == b""
    assert encode_chunk(b"x" * 255)[:4] == b"ff\r\n"
    body, _ = decode(encode_chunk(b"abc") + encode_chunk(b"d" * 300) + LAST_CHUNK)
    assert body == b"abc" + b"d" * 300


def test_extensions_and_bws_before_semicolon():
    body, decoder = decode(b"3 ;a=b;c\r\nabc\r\n0;x\r\n\r\n")
    assert body == b"abc" and decoder.done


@pytest.mark.parametrize(
    "data",
    [
        b"-1\r\n",
        b"+5\r\nhello\r\n",
        b"0x5\r\nhello\r\n",
        b"5 \r\nhello\r\n",  # trailing whitespace without an extension
        b" 5\r\nhello\r\n",
        b"\r\n",  # empty size line
        b"g\r\n",
        b"5\nhello\r\n",  # bare LF after size
        b"5\r\nhelloXX0\r\n\r\n",  # data longer than announced
        b"5\r\nhello\n0\r\n\r\n",  # bare LF after data
        b"5\r\nhello\r0\r\n\r\n",
        b"3\r\nabc\r\n0\r\nbad trailer\r\n\r\n",
        b"3\r\nabc\r\n0\r\nX: a\x00b\r\n\r\n",
        b"5;\x00\r\nhello\r\n",  # control char in extension
        b"5\rX\r\nhello\r\n",  # bare CR in size line
        b"1" * 17 + b"\r\n",  # absurd size: more than 64 bits
        b"fffffffffffffffff\r\n",
    ],
)
def test_malformed(data):
    with pytest.raises(BadRequest) as info:
        decode(data)
    assert info.value.status == 400


def test_malformed_byte_at_a_time_same_error():
    decoder = ChunkedDecoder()
    with pytest.raises(BadRequest):
        for byte in b"5\r\nhello\n0\r\n\r\n":
            decoder.feed(bytes([byte]))


def test_line_too_long():
    with pytest.raises(BadRequest):
        decode(b"5;" + b"x" * 100, max_line=50)
    with pytest.raises(BadRequest, match="too long"):  # its CRLF comes past the limit
        decode(b"5;" + b"x" * 100 + b"\r\nhello\r\n", max_line=50)
    with pytest.raises(BadRequest, match="bare LF"):
        decode(b"5;xx\nhello", max_line=50)
    body, _ = decode(b"5;" + b"x" * 48 + b"\r\nhello\r\n0\r\n\r\n", max_line=50)
    assert body == b"hello"


def test_big_but_legal_size_waits_for_data():
    decoder = ChunkedDecoder()
    assert decoder.feed(b"ffffffffffffffff\r\nabc") == [b"abc"]
    assert not decoder.done


def test_max_body_checked_at_size_line():
    with pytest.raises(BodyTooLarge) as info:
        decode(b"5\r\nhello\r\n7\r\n", max_body=10)
    assert info.value.status == 413
    body, _ = decode(b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n", max_body=10)
    assert body == b"helloworld"


def test_trailers_capped():
    big = b"0\r\n" + b"X: " + b"y" * 4000 + b"\r\n" + (b"X: " + b"y" * 4000 + b"\r\n") * 5
    with pytest.raises(HeadTooLarge):
        decode(big)
    with pytest.raises(BadResponse) as info:  # a node's: a bad answer (502), not a 431
        decode(big, error=BadResponse)
    assert info.value.status == 502


def test_custom_error_class():
    with pytest.raises(BadResponse) as info:
        decode(b"zz\r\n", error=BadResponse)
    assert info.value.status == 502
