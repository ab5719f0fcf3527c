"""Property tests for every byte parser in brood.protocol.

Three rules per parser (after h11's fuzz rule): valid input round-trips;
feeding it in pieces (down to one byte at a time) gives what feeding it whole
gives; garbage raises only the declared error, never anything else.
"""

import struct

from hypothesis import assume, given
from hypothesis import strategies as st

from brood.protocol.chunked import LAST_CHUNK, ChunkedDecoder, encode_chunk
from brood.protocol.errors import BadRequest, PacketError, ProtocolError
from brood.protocol.http1 import (
    _parse_general,
    _parse_response_slow,
    parse_request_head,
    parse_response_framing,
    parse_response_head,
)
from brood.protocol.proxy import V2_SIGNATURE, ProxyInfo, parse_proxy
from brood.protocol.uwsgi import (
    MAX_VARS_SIZE,
    PacketReader,
    decode_vars,
    decode_vars_partial,
    encode_packet,
    encode_vars,
)
from brood.protocol.vars import encode_request_vars, request_vars, routing_key

LIMIT = 65535

keys = st.binary(min_size=1, max_size=40)
values = st.binary(max_size=80)
pairs_st = st.lists(st.tuples(keys, values), max_size=12)


def splits(data: bytes, cuts: list[int]) -> list[bytes]:
    """Cut ``data`` at the given (wrapped) offsets."""
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


cuts_st = st.lists(st.integers(min_value=0, max_value=10**6), max_size=8)


# -- uwsgi vars and packets ----------------------------------------------------


@given(pairs_st)
def test_vars_round_trip(pairs):
    assert decode_vars(encode_vars(pairs)) == pairs


@given(st.binary(max_size=300))
def test_vars_garbage_only_packet_error(block):
    try:
        pairs = decode_vars(block)
    except PacketError as error:
        partial, damage = decode_vars_partial(block)
        assert damage is not None and damage.reason == error.reason and damage.status == 400
        assert block.startswith(encode_vars(partial))
    else:
        assert encode_vars(pairs) == block


@given(pairs_st, st.integers(0, 255), st.integers(0, 255), st.binary(max_size=50), cuts_st)
def test_packet_reader_pieces_equal_whole(pairs, m1, m2, body, cuts):
    raw = encode_packet(pairs, m1, m2)
    data = raw + body
    whole = PacketReader(MAX_VARS_SIZE)
    packet = whole.feed(data)
    assert (packet.modifier1, packet.modifier2, packet.vars, packet.raw) == (m1, m2, pairs, raw)
    assert whole.rest == body
    reader = PacketReader(MAX_VARS_SIZE)
    pieces = splits(data, cuts)
    got = None
    used = 0
    while got is None:
        got = reader.feed(pieces[used])
        used += 1
    assert got == packet
    assert reader.rest + b"".join(pieces[used:]) == body


@given(st.binary(max_size=200), st.integers(0, 300))
def test_packet_reader_garbage_only_protocol_error(data, limit):
    reader = PacketReader(limit)
    try:
        packet = reader.feed(data)
    except ProtocolError:
        return
    if packet is not None:
        assert packet.raw + reader.rest == data


# -- HTTP/1 request heads ------------------------------------------------------

TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
token = st.text(alphabet=TOKEN_CHARS, min_size=1, max_size=12).map(str.encode)
visible = st.binary(min_size=1, max_size=30).map(
    lambda b: bytes(c for c in b if 0x21 <= c <= 0x7E or c >= 0x80) or b"x"
)
header_value = st.lists(visible, max_size=3).map(b" ".join)
plain_name = token.filter(
    lambda n: n.lower() not in (b"host", b"content-length", b"transfer-encoding")
)
host_st = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789.-:", max_size=20).map(str.encode)


@st.composite
def requests(draw):
    method = draw(token)
    # target bytes: visible ASCII without "#" (a fragment is refused); no "?" in the path,
    # nor an escaped NUL (refused too)
    path = b"/" + draw(st.binary(max_size=20).map(
        lambda b: bytes(c for c in b if 0x21 <= c <= 0x7E and c not in (0x23, 0x3F))
        .replace(b"%00", b"%01")))
    query = draw(st.none() | st.binary(max_size=10).map(
        lambda b: bytes(c for c in b if 0x21 <= c <= 0x7E and c != 0x23)))
    target = path if query is None else path + b"?" + query
    version = draw(st.sampled_from([b"HTTP/1.0", b"HTTP/1.1"]))
    headers = draw(st.lists(st.tuples(plain_name, header_value), max_size=6))
    host = draw(host_st)
    headers.insert(draw(st.integers(0, len(headers))), (b"Host", host))
    length = draw(st.none() | st.integers(0, 10**12))
    if length is not None:
        headers.append((b"Content-Length", b"%d" % length))
    data = b"%s %s %s\r\n" % (method, target, version)
    data += b"".join(b"%s: %s\r\n" % h for h in headers) + b"\r\n"
    return data, method, target, version, headers, host, length


@given(requests(), st.binary(max_size=20), cuts_st)
def test_request_round_trip_and_prefixes(req, body, cuts):
    data, method, target, version, headers, host, length = req
    head = parse_request_head(data + body, LIMIT)
    assert (head.method, head.target, head.version) == (method, target, version)
    assert head.headers == headers
    assert head.host == host and head.content_length == length
    assert head.size == len(data)
    # Every proper prefix is "need more", never an error.
    for cut in {c % len(data) for c in cuts} | {len(data) - 1}:
        assert parse_request_head(data[:cut], LIMIT) is None
    # What a parsed head says is what a re-serialised head says.
    again = b"%s %s %s\r\n" % (head.method, head.target, head.version)
    again += b"".join(b"%s: %s\r\n" % h for h in head.headers) + b"\r\n"
    assert parse_request_head(again, LIMIT) == head
    pairs = request_vars(head, remote_addr="1.2.3.4", remote_port=9, server_name=b"vm", server_port=b"80")
    # (an empty Host after SERVER_NAME leaves no key, as uWSGI reads it)
    assert routing_key(pairs) == ((host if len(host) <= 255 else b"vm") or None)
    assert decode_vars(encode_vars(pairs)) == pairs


@given(requests(), st.data())
def test_request_vars_fast_encoder_equals_general(req, data):
    """The router's direct vars encoder gives encode_vars(request_vars(...)) byte for byte."""
    raw, *_ = req
    lines = raw.split(b"\r\n")
    # every request-target form: PATH_INFO is not always the target itself
    method, _, version = lines[0].split(b" ")
    target = data.draw(st.sampled_from([None, b"http://h.test/x", b"http://h.test/a%20b?q=1",
                                        b"http://h.test", b"*", b"h.test:443"]))
    if target is not None:
        method = {b"*": b"OPTIONS", b"h.test:443": b"CONNECT"}.get(target, method)
        lines[0] = b" ".join((method, target, version))
    head_lines = lines[1:-2]
    if head_lines and data.draw(st.booleans()):  # a repeated name: values merge
        head_lines.append(data.draw(st.sampled_from(head_lines)))
    if data.draw(st.booleans()):  # trailing OWS on every value
        head_lines = [line + b" \t" for line in head_lines]
    if data.draw(st.booleans()):
        head_lines.append(b"Transfer-Encoding: chunked")
    raw = b"\r\n".join([lines[0], *head_lines, b"", b""])
    try:
        head = parse_request_head(raw, LIMIT)
    except ProtocolError:
        return
    kw = dict(remote_addr="10.1.2.3", remote_port=data.draw(st.integers(0, 65535)),
              server_name=b"vm", server_port=b"8080", https=data.draw(st.booleans()),
              extra=data.draw(st.sampled_from([(), ((b"E", b"1"),)])),
              server_name_as_http_host=data.draw(st.booleans()),
              router=data.draw(st.sampled_from([b"http", None])),
              content_length=data.draw(st.none() | st.integers(0, 10**9)))
    assert encode_request_vars(head, **kw) == encode_vars(request_vars(head, **kw))


response_value = st.binary(max_size=20).map(lambda b: bytes(c for c in b if c >= 0x20 and c != 0x7F))


@given(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0"]), st.integers(100, 599),
       st.sampled_from([b"", b" ", b" OK", b" Not Found ", b"\tx"]),
       st.lists(st.tuples(st.sampled_from([b"Content-Length", b"content-length",
                                            b"Transfer-Encoding", b"Connection", b"X-A",
                                            b"uWSGI-Encoding"]) | token,
                          st.sampled_from([b"5", b" 5 ", b"chunked", b"close", b"keep-alive"])
                          | response_value), max_size=6),
       st.sampled_from([b"GET", b"HEAD", b"CONNECT", b"get"]), st.binary(max_size=8))
def test_response_fast_path_equals_slow_path(version, status, reason, headers, method, body):
    """The one-regex response path agrees with the line-by-line one, errors included."""
    raw = b"%s %d%s\r\n" % (version, status, reason)
    raw += b"".join(b"%s:%s\r\n" % h for h in headers) + b"\r\n" + body
    fast = _outcome(parse_response_head, raw, LIMIT, method)
    slow = _outcome(_parse_response_slow, raw, LIMIT, method)
    if isinstance(slow, ProtocolError):
        assert (type(fast), fast.args) == (type(slow), slow.args)
    else:
        assert fast == slow


@given(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0"]), st.integers(100, 599),
       st.lists(st.tuples(st.sampled_from([b"Content-Length", b"content-length",
                                            b"Transfer-Encoding", b"Connection", b"CONNECTION",
                                            b"X-A"]) | token,
                          st.sampled_from([b"5", b" 5 ", b"5, 5", b"5,6", b"007", b"chunked",
                                           b"gzip, chunked", b"close", b"keep-alive", b"x\t"])
                          | response_value), max_size=6),
       st.sampled_from([b"\r\n", b"\n"]), st.sampled_from([b"GET", b"HEAD", b"CONNECT", b"get"]),
       st.binary(max_size=8), st.integers(10, 400))
def test_response_framing_equals_full_parse(version, status, headers, eol, method, rest, limit):
    """The lane's framing-only parse says what the full parse says, refusals included."""
    raw = b"%s %d OK%s" % (version, status, eol)
    raw += b"".join(b"%s:%s%s" % (*h, eol) for h in headers) + eol + rest
    for buf in (raw, raw[: len(raw) // 2]):
        full = _outcome(parse_response_head, buf, limit, method)
        framing = _outcome(parse_response_framing, buf, limit, method)
        if isinstance(full, ProtocolError):
            assert (type(framing), framing.args) == (type(full), full.args)
        elif full is None:
            assert framing is None
        else:
            assert framing == (full.status, full.body_kind, full.content_length,
                               full.keep_alive, full.size)


def _outcome(fn, *args):
    try:
        return fn(*args)
    except ProtocolError as error:
        return error


@given(st.binary(max_size=300), st.integers(1, 400))
def test_request_garbage_only_protocol_error(data, limit):
    full = _outcome(parse_request_head, data, limit)
    for cut in range(0, len(data), max(1, len(data) // 12)):
        part = _outcome(parse_request_head, data[:cut], limit)
        if isinstance(part, ProtocolError):
            assert isinstance(full, ProtocolError)  # a refused prefix stays refused
        elif part is not None:
            assert part == full  # complete already: more bytes do not change it


@given(requests(), st.integers(0, 10**6), st.binary(min_size=1, max_size=3))
def test_request_mutations_only_protocol_error(req, pos, junk):
    data = req[0]
    pos %= len(data)
    mutated = data[:pos] + junk + data[pos + len(junk) :]
    result = _outcome(parse_request_head, mutated, LIMIT)
    assert result is None or isinstance(result, ProtocolError) or result.size <= len(mutated)


special_name = st.sampled_from([b"Host", b"host", b"HOST", b"Content-Length", b"content-length",
                                 b"Transfer-Encoding", b"Connection", b"connection", b"Upgrade",
                                 b"Expect", b"X-Other"])
special_value = st.sampled_from([b"close", b"keep-alive", b"Upgrade", b"upgrade, close",
                                 b"chunked", b"gzip, chunked", b"100-continue", b"12", b"12, 12",
                                 b"7, 8", b"websocket", b"example.com", b"a b", b"", b"x "])


@st.composite
def varied_heads(draw):
    """Heads the common path takes and heads it must hand over: special headers in any
    case and number, trailing whitespace, leading empty lines, odd targets."""
    method = draw(st.sampled_from([b"GET", b"POST", b"HEAD", b"OPTIONS", b"CONNECT", b"get"]))
    target = draw(st.sampled_from([b"/", b"/a?b=c", b"*", b"http://h:1/p?q", b"h:443", b"x"]))
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/1.2"]))
    pairs = draw(st.lists(st.one_of(st.tuples(special_name, special_value),
                                    st.tuples(plain_name, header_value)), max_size=10))
    lead = draw(st.sampled_from([b"", b"", b"\r\n"]))
    sep = draw(st.sampled_from([b": ", b":", b":  ", b":\t"]))
    data = lead + b"%s %s %s\r\n" % (method, target, version)
    data += b"".join(name + sep + value + b"\r\n" for name, value in pairs) + b"\r\n"
    return data


@given(varied_heads(), st.integers(20, 400), st.binary(max_size=8))
def test_request_common_path_equals_general_path(data, limit, rest):
    fast = _outcome(parse_request_head, data + rest, limit)
    general = _outcome(_parse_general, data + rest, limit)
    if isinstance(general, ProtocolError):
        assert type(fast) is type(general) and fast.status == general.status
    else:
        assert fast == general


@given(st.binary(max_size=300), st.sampled_from([b"GET", b"HEAD", b"CONNECT"]))
def test_response_garbage_only_protocol_error(data, method):
    for buf in (data, b"HTTP/1.1 200 OK\r\n" + data, b"HTTP/1.0 200 OK\n" + data + b"\n\n"):
        result = _outcome(parse_response_head, buf, 200, method)
        assert result is None or isinstance(result, ProtocolError) or result.size <= len(buf)


# -- chunked -------------------------------------------------------------------


@given(st.lists(st.binary(min_size=1, max_size=40), max_size=8), st.binary(max_size=10), cuts_st)
def test_chunked_round_trip_pieces(chunks, rest, cuts):
    data = b"".join(encode_chunk(c) for c in chunks) + LAST_CHUNK + rest
    whole = ChunkedDecoder()
    assert b"".join(whole.feed(data)) == b"".join(chunks)
    assert whole.done and whole.rest == rest
    pieced = ChunkedDecoder()
    out = []
    for piece in splits(data, cuts):
        out += pieced.feed(piece)
    assert b"".join(out) == b"".join(chunks)
    assert pieced.done and pieced.rest == rest


@given(st.binary(max_size=200), cuts_st)
def test_chunked_garbage_only_protocol_error(data, cuts):
    whole = _outcome(lambda d: b"".join(ChunkedDecoder(max_line=64).feed(d)), data)
    pieced = ChunkedDecoder(max_line=64)
    out = []
    try:
        for piece in splits(data, cuts):
            out += pieced.feed(piece)
    except ProtocolError:
        assert isinstance(whole, ProtocolError)
        return
    # No error in pieces means none whole, and the same payload.
    assert not isinstance(whole, ProtocolError)
    assert b"".join(out) == whole


# -- PROXY protocol --------------------------------------------------------------

ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
port = st.integers(0, 65535)


@given(st.one_of(st.tuples(st.just("TCP4"), ipv4, ipv4), st.tuples(st.just("TCP6"), ipv6, ipv6)), port, port, cuts_st)
def test_proxy_v1_round_trip(addrs, sport, dport, cuts):
    family, src, dst = addrs
    data = f"PROXY {family} {src} {dst} {sport} {dport}\r\n".encode()
    assert parse_proxy(data + b"GET") == (ProxyInfo(src, sport, dst, dport, family), len(data))
    for cut in {c % len(data) for c in cuts}:
        assert parse_proxy(data[:cut]) is None


@given(ipv4, ipv4, port, port, st.binary(max_size=20), cuts_st)
def test_proxy_v2_round_trip(src, dst, sport, dport, tlvs, cuts):
    body = bytes(map(int, src.split("."))) + bytes(map(int, dst.split("."))) + struct.pack("!HH", sport, dport) + tlvs
    data = V2_SIGNATURE + b"\x21\x11" + struct.pack("!H", len(body)) + body
    assert parse_proxy(data + b"x") == (ProxyInfo(src, sport, dst, dport, "TCP4"), len(data))
    for cut in {c % len(data) for c in cuts}:
        assert parse_proxy(data[:cut]) is None


@given(st.one_of(st.binary(max_size=120), st.binary(max_size=60).map(lambda b: b"PROXY " + b), st.binary(max_size=60).map(lambda b: V2_SIGNATURE + b)))
def test_proxy_garbage_only_bad_request(data):
    try:
        result = parse_proxy(data)
    except BadRequest:
        return
    assume(result is not None)
    info, used = result
    assert 0 < used <= len(data)
