"""uWSGI's log encoders as brood makes them (brood.logs.encoders): the option's syntax,
each encoder's bytes, templates read as uWSGI 2.0.21 reads them, JSON that is always
JSON, and which logger a chain belongs to. What real uWSGI writes for the same ini is
compared in tests/interop/test_uwsgi_log_encoders.py."""

from __future__ import annotations

import gzip
import json
import re
import time
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brood.config.model import Config
from brood.config.option import OptionError
from brood.logs.encoders import (
    Chain,
    EncoderSpec,
    chain_for,
    gzip_member,
    json_escape,
    notes,
    parse_encoder,
    parse_template,
)
from brood.logs.spec import LogPlan

NOW = 1795579500.277308  # 2026-11-25 04:05:00.277308 UTC


@pytest.fixture
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def encode(*values: str, line: bytes = b"hello\n", now: float = NOW) -> bytes:
    return Chain([parse_encoder(v) for v in values]).encode(line, now)


# -- the option ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "spec"),
    [
        ("nl", EncoderSpec("nl", "", None, "nl")),
        ("prefix [app] ", EncoderSpec("prefix", "[app] ", None, "prefix [app] ")),
        ("prefix  two spaces", EncoderSpec("prefix", " two spaces", None, "prefix  two spaces")),
        (
            'json:foo {"a":"${msg}"}',
            EncoderSpec("json", '{"a":"${msg}"}', "foo", 'json:foo {"a":"${msg}"}'),
        ),
        # the space comes first: a colon in ARGS names no logger
        (
            "format ${strftime:%H:%M}",
            EncoderSpec("format", "${strftime:%H:%M}", None, "format ${strftime:%H:%M}"),
        ),
        ("gzip:", EncoderSpec("gzip", "", "", "gzip:")),
    ],
)
def test_name_logger_and_args_split_as_uwsgi_splits_them(value: str, spec) -> None:
    assert parse_encoder(value) == spec


def test_an_unknown_encoder_stops_with_one_line_naming_the_option() -> None:
    with pytest.raises(OptionError) as info:
        parse_encoder("base64 x", "log-req-encoder")
    assert str(info.value) == (
        "--log-req-encoder base64 x: no log encoder 'base64' (brood "
        "has uWSGI's: prefix, suffix, nl, format, json, gzip, "
        "compress)"
    )
    with pytest.raises(
        OptionError,
        match=r"^--log-encoder msgpack:foo a: the msgpack "
        r"encoder comes with uWSGI's msgpack plugin, which brood does not "
        r"have",
    ):
        parse_encoder("msgpack:foo a")


def test_the_plan_reads_both_options_and_they_start_the_log_master() -> None:
    plan = LogPlan.from_config(
        Config.from_dict({"log-encoder": ["prefix A", "nl"], "log-req-encoder": ["json:x {}"]})
    )
    assert [e.name for e in plan.encoders] == ["prefix", "nl"]
    assert plan.req_encoders == (EncoderSpec("json", "{}", "x", "json:x {}"),)
    assert plan.needs_master
    assert LogPlan.from_config(Config.from_dict({"log-req-encoder": ["nl"]})).needs_master
    assert not LogPlan.from_config(Config.from_dict({})).needs_master
    with pytest.raises(OptionError, match="^--log-encoder zip: no log encoder 'zip'"):
        LogPlan.from_config(Config.from_dict({"log-encoder": ["zip"]}))


# -- the simple encoders ---------------------------------------------------------------


def test_prefix_suffix_and_nl_wrap_the_line_as_it_is() -> None:
    assert encode("prefix [app] ") == b"[app] hello\n"
    assert encode("suffix <") == b"hello\n<"  # (after the newline, as uWSGI)
    assert encode("nl") == b"hello\n\n"
    assert encode("prefix") == b"hello\n"
    assert encode("nl ignored") == b"hello\n\n"


def test_gzip_is_one_member_with_no_mtime_and_compress_a_zlib_stream() -> None:
    out = encode("gzip")
    assert out[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03"
    assert gzip.decompress(out) == b"hello\n"
    assert int.from_bytes(out[-8:-4], "little") == zlib.crc32(b"hello\n")
    assert int.from_bytes(out[-4:], "little") == 6
    assert zlib.decompress(encode("compress")) == b"hello\n"
    assert encode("compress")[:2] == b"\x78\x9c"  # (default level)


@given(st.binary(max_size=3000))
def test_gzip_gives_back_any_bytes(data: bytes) -> None:
    assert gzip.decompress(gzip_member(data)) == data


def test_encoders_chain_in_the_order_given() -> None:
    assert encode("format <${msg}>", "prefix [a]", "nl") == b"[a]<hello>\n"
    assert encode("nl", "format <${msg}>") == b"<hello\n>"  # (msg drops one newline)
    assert gzip.decompress(encode("format ${msg}", "gzip")) == b"hello"


# -- format ---------------------------------------------------------------------------


def test_format_variables(utc) -> None:
    assert (
        encode("format ${msg}|${msgnl}|${unix}|${micros}|${millis}")
        == b"hello|hello\n|1795579500|1795579500277308|1795579500277"
    )
    assert encode("format ${strftime:%Y-%m-%d %H:%M:%S} ${msg}") == b"2026-11-25 04:05:00 hello"
    assert encode("format [${nope}${}]${msg}") == b"[]hello"  # unknown: nothing
    assert encode("format ${msg}", line=b"no newline") == b"no newline"
    assert encode("format ${msg}", line=b"two\n\n") == b"two\n"
    assert encode("format ${msg}", line=b"") == b""


def test_strftime_longer_than_uwsgis_buffer_gives_nothing(utc) -> None:
    assert encode("format <${strftime:" + "x" * 63 + "}>") == b"<" + b"x" * 63 + b">"
    assert encode("format <${strftime:" + "x" * 64 + "}>") == b"<>"
    assert encode("format <${strftime:%Y%Y%Y%Y%Y%Y%Y%Y%Y%Y%Y%Y%Y%Y%Y%Y}>") == b"<>"


@pytest.mark.parametrize(
    ("template", "parts", "garbled"),
    [
        ("a ${msg} b", (b"a ", "msg", b" b"), False),
        ("${msg}${msgnl}", ("msg", "msgnl"), False),
        ("price $5 ${msg}", (b"price $5 ", "msg"), False),
        ("a$${msg}", (b"a$${msg}",), False),  # '$' takes the next character: no variable
        ("a${b$c}d", (b"a", "b$c", b"d"), False),
        ("a{x}}", (b"a{x}}",), False),
        ("tail $", (b"tail $",), False),
        ("abc${f", (b"abc${f",), False),  # (uWSGI keeps 3 bytes more: all of it here)
        # what uWSGI 2.0.21 garbles (it reads past the part): written as written here
        ("$x ${msg}", (b"$x ", "msg"), True),
        ("${msg}$x|", ("msg", b"$x|"), True),
        ("${msg}$", ("msg", b"$"), True),
        ("<${msg}|abc${foo", (b"<", "msg", b"|abc${foo"), True),
        ("${foo", (b"${foo",), True),
    ],
)
def test_templates_are_read_as_uwsgi_reads_them(template, parts, garbled) -> None:
    assert parse_template(template).parts == parts
    assert parse_template(template).garbled is garbled


# -- json -----------------------------------------------------------------------------


def uwsgi_escape(data: bytes) -> bytes:
    """uWSGI 2.0.21's escape_json (core/utils.c), as a model: five escapes, the rest
    raw, and the string ends at a NUL."""
    table = {9: b"\\t", 10: b"\\n", 13: b"\\r", 34: b'\\"', 92: b"\\\\"}
    return b"".join(table.get(b, bytes([b])) for b in data.split(b"\0")[0])


def uwsgi_makes_json_of(data: bytes) -> bool:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f]", text)


def brood_reads(data: bytes) -> str:
    """The string a JSON reader gets from brood: the text, each byte that is not UTF-8
    as the character of the same number."""
    text = data.decode("utf-8", "surrogateescape")
    return re.sub("[\udc80-\udcff]", lambda m: chr(ord(m.group()) - 0xDC00), text)


TEMPLATE = 'json {"msg":"${msg}","nl":"${msgnl}","t":"${strftime:%H\\"%M}","u":${unix}}'


@given(st.binary(max_size=400))
def test_json_is_json_for_any_bytes(line: bytes) -> None:
    out = encode(TEMPLATE, line=line)
    record = json.loads(out)  # (strict: a raw control character would fail)
    assert record["nl"] == brood_reads(line)
    assert record["msg"] == brood_reads(line[:-1] if line.endswith(b"\n") else line)
    assert record["u"] == 1795579500


# text as uWSGI makes JSON of it: UTF-8, with tabs, newlines, quotes and backslashes
_TEXT = st.text(
    st.characters(
        blacklist_categories=("Cs",),
        blacklist_characters=[chr(c) for c in range(32) if c not in (9, 10, 13)],
    ),
    max_size=200,
)


@given(_TEXT)
def test_json_of_what_uwsgi_makes_json_of_is_uwsgis_byte_for_byte(text: str) -> None:
    data = text.encode()
    assert uwsgi_makes_json_of(data)
    assert json_escape(data) == uwsgi_escape(data)
    assert json.loads(b'"' + json_escape(data) + b'"') == text


def test_json_escapes_what_uwsgi_leaves_raw() -> None:
    assert json_escape(b'a\tb\nc\rd"e\\f') == b'a\\tb\\nc\\rd\\"e\\\\f'
    assert json_escape(b"\x01\x1f\x7f") == b"\\u0001\\u001f\x7f"
    assert json_escape(b"caf\xc3\xa9 caf\xe9") == b"caf\xc3\xa9 caf\\u00e9"
    assert json_escape(b"a\0b") == b"a\\u0000b"  # (uWSGI's string ends at the NUL)
    assert json_escape(b"\xed\xa0\x80") == b"\\u00ed\\u00a0\\u0080"  # (a surrogate)
    assert encode('json {"m":"${msg}","s":"${strftime:a"b}"}') == b'{"m":"hello","s":"a\\"b"}'


# -- which logger a chain belongs to ---------------------------------------------------


def test_an_encoder_for_a_logger_changes_only_that_loggers_lines() -> None:
    specs = [parse_encoder(v) for v in ("prefix A", "prefix:foo F", "prefix:bar B", "nl")]
    assert chain_for(specs, None).encode(b"x\n", NOW) == b"Ax\n\n"
    assert chain_for(specs, "foo").encode(b"x\n", NOW) == b"FAx\n\n"
    assert chain_for(specs, "baz").encode(b"x\n", NOW) == b"Ax\n\n"
    assert not chain_for([parse_encoder("gzip:foo")], None)
    assert not chain_for([parse_encoder("gzip:")], "foo")  # ('' is nobody's name)


def test_notes_say_what_will_not_do_what_it_seems() -> None:
    specs = [
        parse_encoder(v)
        for v in ("json:nobody {}", "json:foo {}", "format ${mgs} ${msg}", "format ${msg}$x")
    ]
    found = notes(specs, {"foo"}, "log-encoder")
    assert found == [
        "--log-encoder json:nobody {}: no logger is named 'nobody': this encoder changes "
        "no line (as in uWSGI)",
        "--log-encoder format ${mgs} ${msg}: ${mgs} is no variable of uWSGI's encoders "
        "(msg, msgnl, unix, micros, millis, strftime:FORMAT): it writes nothing (as in "
        "uWSGI)",
        "--log-encoder format ${msg}$x: uWSGI 2.0.21 garbles a '$' not starting '${' at "
        "the start or right after a variable, and a '${' never closed; brood writes them "
        "as written",
    ]
    plan = LogPlan.from_config(
        Config.from_dict({"logger": ["foo file:/dev/null"], "log-req-encoder": ["nl:bar"]})
    )
    assert plan.notes() == [
        "--log-req-encoder nl:bar: no logger is named 'bar': this "
        "encoder changes no line (as in uWSGI)"
    ]
