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


# Pieces of uWSGI's grammar that reach each other: three files including, inheriting
# and looping over each other, huge counts, self-referencing placeholders, NUL bytes,
# bytes that are not UTF-8, CRLF and a byte order mark.
_KEYS = st.sampled_from(
    ["foo", "processes", "socket", "master", "ini", "include", "inherit", "for", "endfor",
     "end", "endif", "if-exists", "if-opt", "if-not-opt", "for-times", "for-readline", "set",
     "set-ph", "procname", "%(foo)", "%d", "strict", "listen", "buffer-size", "route"])
_VALUE_PIECES = st.sampled_from(
    ["%(", "@(", "$(", ")", "%(foo)", "%(foo + 1)", "%(foo * foo)", "%(_)", "$(HOME)",
     "@(a.ini)", "%d", "%n", "%", "a.ini", "b.ini", "c.ini", ":other", "a.ini:other", ".",
     "1", "10000000", "99999999999999999999", "=", "x=y", " ", "\0", "\udcff", "é", "/dev/zero",
     "@(/dev/zero)", "@(fd://99)", "@(sym://x)", "%(%(foo))", "x" * 300])
_VALUES = st.lists(_VALUE_PIECES, max_size=6).map("".join)
_LINES = st.one_of(
    st.builds(lambda k, eq, v: f"{k}{eq}{v}", _KEYS, st.sampled_from([" = ", "=", ""]),
              _VALUES),
    st.sampled_from(["[uwsgi]", "[other]", "[", "; c", "# c", "\ufeff[uwsgi]", ""]),
    st.text(max_size=20))
_FILES = st.builds(lambda lines, crlf: ("\r\n" if crlf else "\n").join(["[uwsgi]", *lines]),
                   st.lists(_LINES, max_size=20), st.booleans())
_ARGV = st.lists(st.one_of(st.sampled_from(
    ["--ini", "a.ini", "b.ini:other", "--set", "--set-ph", "-s", "-p", "--for", "--endfor",
     "--if-opt", "--endif", "--ini=c.ini", "--strict", "-M", "--", "--foo"]),
    _VALUES.map(lambda v: v.replace("\0", ""))), max_size=6)


@pytest.fixture(scope="module")
def three_files(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@given(st.lists(_FILES, min_size=3, max_size=3), _ARGV,
       st.dictionaries(_KEYS.map(lambda k: "UWSGI_" + k.upper().replace("-", "_")),
                       _VALUES.map(lambda v: v.replace("\0", "")), max_size=2))
def test_files_that_reach_each_other_raise_only_option_error(no_commands, three_files,
                                                            texts, argv, env):
    for name, text in zip(("a.ini", "b.ini", "c.ini"), texts, strict=True):
        (three_files / name).write_bytes(text.encode("utf-8", "surrogateescape"))
    cwd = os.getcwd()
    os.chdir(three_files)  # (the files name each other relatively)
    try:
        load_config(["--ini", "a.ini", *argv], environ={"HOME": "/h", **env})
    except OptionError as exc:
        assert "\n" not in str(exc) and str(exc)
    finally:
        os.chdir(cwd)
