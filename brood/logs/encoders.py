"""uWSGI's log encoders (--log-encoder, --log-req-encoder): the bytes a logger writes for
a line, made as uWSGI 2.0.21 makes them (pure: the time is passed in).

An option's value is ``NAME[:LOGGER] [ARGS]``: the encoder NAME and its ARGS (all after
the first space, as written). The encoders of one option form a chain applied in the
order given, each to what the one before made. One with ``:LOGGER`` works for the
logger named so only (``--logger 'LOGGER TYPE:ARG'``, reached by --log-route); the
others for every logger and the plain log. --log-encoder's chain takes the general
lines (request lines too, unless a --req-logger takes them apart), --log-req-encoder's
the request lines of a --req-logger.

Each encoder takes the whole line, its newline included:

* ``prefix ARGS`` / ``suffix ARGS``: ARGS before / after it (a suffix comes after the
  newline, so it starts the next line);
* ``nl``: a newline after it;
* ``format TEMPLATE`` / ``json TEMPLATE``: the template, its variables replaced:
  ``${msg}`` the line without its newline, ``${msgnl}`` with it, ``${unix}`` the epoch
  second, ``${micros}`` / ``${millis}`` the epoch in microseconds / milliseconds,
  ``${strftime:FORMAT}`` the local time (nothing when it takes more than 63 bytes);
  any other name gives nothing. ``json`` escapes the text it puts in (msg, msgnl,
  strftime) for a JSON string; the template itself is the user's;
* ``gzip`` / ``compress``: the line as one gzip member / one zlib stream.

The chain's result is written as it is: after ``format`` or ``json`` there is no
newline unless the template ends with ``${msgnl}`` or an ``nl`` encoder follows, and
the lines run together, as they do in uWSGI.

Where brood differs, deliberately:

* brood encodes each line; uWSGI each read of its log pipe, which is one write of a
  process: a write of several lines is one message there (one JSON record with
  ``\\n`` inside), and a line written in two writes is two;
* uWSGI's json escapes only tab, newline, carriage return, ``"`` and ``\\``: another
  control byte, or a byte that is not UTF-8, goes into the string raw (no longer
  JSON), and a NUL ends the string there. brood writes each of those as ``\\u00XX``
  (XX: the byte), so the record is always JSON; a line uWSGI made valid JSON of comes
  out the same, byte for byte;
* a ``$`` that does not start ``${`` at the template's start or right after a
  variable, or a ``${`` never closed, make uWSGI write bytes from past that part of
  the template (``notes`` says so); brood writes those characters as they are.
"""

from __future__ import annotations

import re
import struct
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from brood.config.option import OptionError

NAMES = ("prefix", "suffix", "nl", "format", "json", "gzip", "compress")
# Encoders of uWSGI plugins brood does not have: refused with the plugin named.
PLUGIN_ENCODERS = {"msgpack": "msgpack"}
VARIABLES = ("msg", "msgnl", "unix", "micros", "millis", "strftime:FORMAT")
STRFTIME_MAX = 63  # uWSGI formats into 64 bytes; a longer result gives nothing


@dataclass(frozen=True)
class EncoderSpec:
    """One --log-encoder/--log-req-encoder value. ``logger``: the name after ``:`` (None:
    every logger)."""

    name: str
    args: str = ""
    logger: str | None = None
    text: str = ""  # as written, for messages


def parse_encoder(value: str, option: str = "log-encoder") -> EncoderSpec:
    """``NAME[:LOGGER] [ARGS]`` as uWSGI splits it; OptionError for a name brood does not
    have (uWSGI stops too: ``log encoder "NAME" not found``)."""
    text = str(value)
    head, space, args = text.partition(" ")
    name, colon, logger = head.partition(":")
    where = f"--{option} {text}"
    if name in PLUGIN_ENCODERS:
        raise OptionError(
            f"{where}: the {name} encoder comes with uWSGI's "
            f"{PLUGIN_ENCODERS[name]} plugin, which brood does not have "
            f"(brood has {', '.join(NAMES)})"
        )
    if name not in NAMES:
        raise OptionError(
            f"{where}: no log encoder '{name}' (brood has uWSGI's: {', '.join(NAMES)})"
        )
    return EncoderSpec(name, args if space else "", logger if colon else None, text)


# -- templates (format, json) ----------------------------------------------------------


@dataclass(frozen=True)
class Template:
    """A format/json template cut as uWSGI cuts it: ``parts`` are literal bytes or
    variable names (str). ``garbled``: uWSGI 2.0.21 writes this one otherwise."""

    parts: tuple[bytes | str, ...]
    garbled: bool = False

    @property
    def unknown(self) -> tuple[str, ...]:
        return tuple(p for p in self.parts if isinstance(p, str) and not _known(p))


def _known(name: str) -> bool:
    return name in ("msg", "msgnl", "unix", "micros", "millis") or name.startswith("strftime:")


def parse_template(args: str) -> Template:
    """uWSGI's reading: ``${NAME}`` is a variable; a ``$`` and the character after it
    are text (so ``$${msg}`` is text); an unclosed ``${`` is text here."""
    parts: list[bytes | str] = []
    literal: list[str] = []
    garbled = False
    i, n = 0, len(args)
    while i < n:
        c = args[i]
        if c != "$":
            literal.append(c)
            i += 1
            continue
        if i + 1 == n:  # a last '$'
            garbled = garbled or not literal
            literal.append(c)
            break
        if args[i + 1] != "{":
            garbled = garbled or not literal  # (uWSGI: no text before it since a variable)
            literal.append(args[i : i + 2])
            i += 2
            continue
        end = args.find("}", i + 2)
        if end < 0:  # never closed (uWSGI keeps the text before and 3 bytes more)
            garbled = garbled or not literal or n - i > 3
            literal.append(args[i:])
            break
        if literal:
            parts.append(_bytes("".join(literal)))
            literal = []
        parts.append(args[i + 2 : end])
        i = end + 1
    if literal:
        parts.append(_bytes("".join(literal)))
    return Template(tuple(parts), garbled)


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def strftime(fmt: str, now: float) -> bytes:
    """``fmt`` in local time, as uWSGI's 64-byte strftime gives it (b"" when longer)."""
    try:
        out = _bytes(time.strftime(fmt, time.localtime(now)))
    except ValueError:  # (an embedded NUL: nothing, as C's strftime stops there)
        return b""
    return out if len(out) <= STRFTIME_MAX else b""


# -- JSON strings ------------------------------------------------------------------------

_JSON_PLAIN = re.compile(rb'[\x00-\x1f"\\\x80-\xff]')
_JSON_SPECIAL = re.compile('[\x00-\x1f"\\\\\udc80-\udcff]')
_JSON_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r", '"': '\\"', "\\": "\\\\"}


def _json_char(match: re.Match[str]) -> str:
    char = match.group()
    named = _JSON_NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\u{code - 0xDC00 if code >= 0xDC80 else code:04x}"


def json_escape(data: bytes) -> bytes:
    """``data`` for the inside of a JSON string: uWSGI's five escapes (tab, newline,
    carriage return, quote, backslash), and ``\\u00XX`` for every other control byte and
    every byte that is not part of UTF-8 text (uWSGI leaves those raw)."""
    if not _JSON_PLAIN.search(data):
        return data
    text = data.decode("utf-8", "surrogateescape")
    return _JSON_SPECIAL.sub(_json_char, text).encode("utf-8")


# -- the encoders ------------------------------------------------------------------------

_GZIP_HEAD = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03"  # no name, no mtime, OS unix


def gzip_member(data: bytes) -> bytes:
    """One gzip member as uWSGI makes it: raw deflate (default level, 32 KiB window,
    memLevel 9) flushed with a sync point, then finished; no mtime."""
    deflate = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15, 9)
    body = deflate.compress(data) + deflate.flush(zlib.Z_SYNC_FLUSH) + deflate.flush()
    return _GZIP_HEAD + body + struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF)


Encode = Callable[[bytes, float], bytes]


def _value(name: str, escape: Callable[[bytes], bytes]) -> Encode:
    """What ``${name}`` becomes, as a function of the message and the time."""
    if name == "msg":
        return lambda msg, now: escape(msg[:-1] if msg.endswith(b"\n") else msg)
    if name == "msgnl":
        return lambda msg, now: escape(msg)
    if name == "unix":
        return lambda msg, now: b"%d" % int(now)
    if name == "micros":
        return lambda msg, now: b"%d" % int(now * 1_000_000)
    if name == "millis":
        return lambda msg, now: b"%d" % int(now * 1000)
    if name.startswith("strftime:"):
        fmt = name[len("strftime:") :]
        return lambda msg, now: escape(strftime(fmt, now))
    return lambda msg, now: b""


def _templated(args: str, escape: Callable[[bytes], bytes]) -> Encode:
    pieces = [p if isinstance(p, bytes) else _value(p, escape) for p in parse_template(args).parts]

    def encode(msg: bytes, now: float) -> bytes:
        return b"".join(p if isinstance(p, bytes) else p(msg, now) for p in pieces)

    return encode


def _same(data: bytes) -> bytes:
    return data


def compile_encoder(spec: EncoderSpec) -> Encode:
    """The function ``(message, now) -> bytes`` of one encoder."""
    args = _bytes(spec.args)
    if spec.name == "prefix":
        return lambda msg, now: args + msg
    if spec.name == "suffix":
        return lambda msg, now: msg + args
    if spec.name == "nl":
        return lambda msg, now: msg + b"\n"
    if spec.name == "format":
        return _templated(spec.args, _same)
    if spec.name == "json":
        return _templated(spec.args, json_escape)
    if spec.name == "gzip":
        return lambda msg, now: gzip_member(msg)
    if spec.name == "compress":
        return lambda msg, now: zlib.compress(msg)
    raise AssertionError(spec.name)  # (parse_encoder let no other name through)


class Chain:
    """The encoders one logger's lines go through, in order."""

    __slots__ = ("steps",)

    def __init__(self, specs: Sequence[EncoderSpec] = ()) -> None:
        self.steps = tuple(compile_encoder(spec) for spec in specs)

    def __bool__(self) -> bool:
        return bool(self.steps)

    def encode(self, line: bytes, now: float) -> bytes:
        """What the logger writes for ``line`` (with its newline) at ``now``."""
        for step in self.steps:
            line = step(line, now)
        return line


def chain_for(specs: Sequence[EncoderSpec], logger: str | None) -> Chain:
    """The chain of the logger named ``logger`` (None: unnamed, or the plain log): the
    encoders without ``:LOGGER``, and those naming it."""
    return Chain(
        [s for s in specs if s.logger is None or (logger is not None and s.logger == logger)]
    )


def notes(specs: Sequence[EncoderSpec], names: set[str], option: str) -> list[str]:
    """Lines for the master's log about what will not do what it seems to: a variable
    no encoder knows, a ``:LOGGER`` no logger is named, a template uWSGI garbles."""
    found = []
    for spec in specs:
        where = f"--{option} {spec.text}"
        if spec.logger is not None and spec.logger not in names:
            found.append(
                f"{where}: no logger is named '{spec.logger}': this encoder "
                "changes no line (as in uWSGI)"
            )
        if spec.name not in ("format", "json"):
            continue
        template = parse_template(spec.args)
        for name in dict.fromkeys(template.unknown):
            found.append(
                f"{where}: ${{{name}}} is no variable of uWSGI's encoders "
                f"({', '.join(VARIABLES)}): it writes nothing (as in uWSGI)"
            )
        if template.garbled:
            found.append(
                f"{where}: uWSGI 2.0.21 garbles a '$' not starting '${{' at the "
                "start or right after a variable, and a '${' never closed; "
                "brood writes them as written"
            )
    return found
