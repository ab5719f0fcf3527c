"""Garbage in the ini parser or on the command line only ever raises OptionError."""

from hypothesis import given
from hypothesis import strategies as st

from brood.config.argv import parse_argv
from brood.config.ini import parse_ini
from brood.config.option import OptionError

_INI_PIECES = st.sampled_from(
    ["[uwsgi]", "[x]", "socket = :1", "master", "if-env = A", "if-exists = /", "endif",
     "endif =", "%(a)", "a = %d%n%p%c%%", "$(A)", "set-ph = a=1", "set-ph = ", "= x", ";c",
     "if-opt = a=1", "a = %(_)", "", "  "]
)


@given(st.lists(st.one_of(_INI_PIECES, st.text(max_size=20)), max_size=20))
def test_ini_parser_raises_only_option_error(lines):
    try:
        got = parse_ini("\n".join(lines), "/tmp/f.ini", "uwsgi", {"A": "1"})
    except OptionError as exc:
        assert "\n" not in str(exc)
    else:
        assert all(isinstance(e.key, str) and e.key for e in got.entries)


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
