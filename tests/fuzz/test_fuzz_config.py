"""Garbage in the ini parser, the config load or on the command line only ever raises
OptionError."""

import os
import tempfile

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brood.config import assemble
from brood.config.argv import parse_argv
from brood.config.ini import parse_ini
from brood.config.load import load_config
from brood.config.option import OptionError

_INI_PIECES = st.sampled_from(
    ["[uwsgi]", "[x]", "socket = :1", "master", "if-env = A", "if-exists = /", "endif",
     "endif =", "%(a)", "a = %d%n%p%c%%", "$(A)", "set-ph = a=1", "set-ph = ", "= x", ";c",
     "if-opt = a=1", "a = %(_)", "", "  ", "for = a b", "for-times = 2", "endfor",
     "end", "a = %(a + 1)", "b = %(a b ++)", "c = @(/etc/hostname)", "d = @(exec://x)",
     "x = %(x)y", "x = y%(x)", "inherit = /dev/null", "ini = :x", "include = %p",
     "set = a=1", "k = 100%", "ifenv = A", "end-if", "if-reload", "[uwsgi"]
)


@given(st.lists(st.one_of(_INI_PIECES, st.text(max_size=20)), max_size=20))
def test_ini_parser_raises_only_option_error(lines):
    try:
        got = parse_ini("\n".join(lines), "/tmp/f.ini", "uwsgi")
    except OptionError as exc:
        assert "\n" not in str(exc)
    else:
        assert all(isinstance(e.key, str) and e.key for e in got)


@pytest.fixture(scope="module")
def no_commands():
    """Generated text never runs a command (or reads a descriptor) here."""
    real = assemble.read_source
    assemble.read_source = lambda spec: f"<{spec}>"
    try:
        yield
    finally:
        assemble.read_source = real


@given(st.lists(st.one_of(_INI_PIECES, st.text(max_size=20)), max_size=20))
def test_the_whole_load_raises_only_option_error(no_commands, lines):
    fd, path = tempfile.mkstemp(suffix=".ini")
    try:
        os.write(fd, "\n".join(lines).encode("utf-8", "surrogateescape"))
        os.close(fd)
        load_config(["--ini", path], environ={"A": "1"})
    except OptionError as exc:
        assert "\n" not in str(exc)
    finally:
        os.unlink(path)


_WORDS = st.sampled_from(
    ["--master", "--master=0", "-M", "-Mp", "-p", "4", "--socket", ":1", "--", "-s:2",
     "--processes=x", "--nope", "-Z", "x.py", "--env", "A=B", "-", "--=", "---"]
)


@given(st.lists(st.one_of(_WORDS, st.text(max_size=12)), max_size=10))
def test_argv_parser_raises_only_option_error(words):
    try:
        parse_argv(words)
    except OptionError as exc:
        assert "\n" not in str(exc)
