"""Placeholder math and uWSGI's expansion scan (brood.config.expand).

The expected values were read from uWSGI 2.0.21's --show-config; the properties check
the arithmetic against C's own (libc's strtoll, 64-bit wrap-around) rather than against
a second Python model of it.
"""

import ctypes
from fractions import Fraction
from math import trunc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brood.config.expand import placeholder, placeholder_math, scan, strtoll
from brood.config.option import OptionError

VALUES = {"foo": "17", "bar": "30", "big": "9223372036854775807", "sp": "a b",
          "c1": "4 ; comment", "n7": "-7", "a(b)": "P", "self": "%(self)b", "Z": "z",
          "flag": None}


def expand(value: str, values: dict = VALUES) -> str:
    return scan(value, "%", lambda name: placeholder(name, values.get))


@pytest.mark.parametrize("value, expected", [
    ("%(foo + bar + 3 * 2)", "100"),  # left to right: ((17 + 30) + 3) * 2
    ("%(foo ++)", "18"),
    ("%(foo --)", "16"),
    ("%(foo bar ++)", "1731"),  # no operator between terms: joined as text
    ("%(foo / 0)", "0"),  # uWSGI's answer to a division by zero
    ("%(foo + abc)", "17"),  # an unknown name is empty, read as 0
    ("%(nope + 1)", "1"),
    ("%(3 - 10)", "-7"),
    ("%(foo*2)", "%(foo*2)"),  # no space: one name, unknown, kept as written
    ("%(+ 5)", "5"),
    ("%(5 +)", "5"),
    ("%(5 + + 2)", "7"),
    ("%( foo )", "17"),
    ("%(foo  +  1)", "18"),
    ("%(0x10 + 1)", "1"),  # not digits: a name (unknown), so 0
    ("%(-3 + 1)", "1"),  # the same for a sign
    ("%(1.5 + 1)", "1"),
    ("%(big + 1)", "-9223372036854775808"),  # wraps
    ("%(99999999999999999999 + 0)", "9223372036854775807"),  # strtoll clamps
    ("%(big * 2)", "-2"),
    ("%(-7 / 2)", "0"),
    ("%(n7 / 2)", "-3"),  # truncated towards zero
    ("%(c1 + 1)", "5"),  # strtoll stops at the comment
    ("%(sp 1)", "a b1"),
    ("%(sp ++)", "1"),
    ("%(++ 5)", "5"),
    ("%(5 ++ ++)", "7"),
    ("%(0 - 5 + 2)", "-3"),
    ("%(flag + 1)", "1"),  # a bare command-line flag has no value
    ("%( )", "%( )"),  # no term at all
    ("%( + )", "%( + )"),
])
def test_math_as_uwsgi_computes_it(value: str, expected: str) -> None:
    assert expand(value) == expected


@pytest.mark.parametrize("value, expected", [
    ("%(a(b))", "P"),  # nested parentheses belong to the name
    ("[%()]", "[%()]"),  # an empty name is kept
    ("%(nope)x", "%(nope)x"),  # so is an unknown one
    ("%(flag)", "%(flag)"),  # and a name without a value
    ("x%(Z)%(Z)", "xzz"),
    ("%(self)", "%(self)b"),  # the result is searched again, but not at its start...
    ("%(foo %(Z))", "%(foo z)"),  # another % inside starts over from there
    ("100% %(foo)", "100% 17"),
])
def test_scan_quirks(value: str, expected: str) -> None:
    assert expand(value) == expected


def test_a_result_is_searched_again_past_the_first_character() -> None:
    values = {"a": "%(b)", "b": "B"}
    assert expand("x%(a)", values) == "xB"
    assert expand("%(a)", values) == "%(b)"  # (uWSGI: nest = $(NEST1) stays $(NEST2))


def test_a_value_that_keeps_growing_is_an_error() -> None:
    with pytest.raises(OptionError, match=r"keeps expanding \(more than 1000 replacements "
                                          r"or 1 MiB: a value that refers to itself"):
        expand("x%(a)", {"a": "x%(a)"})
    # (each replacement rescans from the start: 10000 of them took seconds a value)
    with pytest.raises(OptionError, match=r"more than 1000 replacements"):
        expand("q%(a)", {"a": "y%(a)"})
    assert expand("%(a)" * 1000, {"a": "1"}) == "1" * 1000


def _scan_by_character(value, symbol, hook):
    """uWSGI's scan as its loop reads it, a character at a time (the reference)."""
    state = depth = start = 0
    j = 0
    while j < len(value):
        char = value[j]
        if char == symbol:
            state = 1
        elif char == "(" and state == 1:
            state, depth, start = 2, 0, j + 1
        elif state > 1 and char in "()" and (char == "(" or depth):
            state, depth = state + 1, depth + (1 if char == "(" else -1)
        elif state > 1 and char == ")":
            found = hook(value[start:start + state - 2]) if state > 2 else None
            state = 0
            if found is not None:
                value = value[:start - 2] + found + value[j + 1:]
                j = 1
                continue
        elif state > 1:
            state += 1
        else:
            state = 0
        j += 1
    return value


SCANNED = {"a": "A", "b": "%(a)", "ab": "(", "a(b)": "P", "$(x)": "D", "x y": "S"}


@given(st.text(alphabet=st.sampled_from([*"%$()ab x"]), max_size=30),
       st.sampled_from("%$"))
def test_scan_replaces_as_uwsgis_character_by_character_loop(value, symbol) -> None:
    assert scan(value, symbol, SCANNED.get) == _scan_by_character(value, symbol,
                                                                  SCANNED.get)


def test_each_symbol_is_its_own_pass() -> None:
    env = {"HOME": "/root", "X": "$(HOME)"}
    assert scan("$(HOME)/%(foo)", "$", env.get) == "/root/%(foo)"
    assert scan("a$(X)", "$", env.get) == "a/root"


int64 = st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1)
LIBC = ctypes.CDLL(None)
LIBC.strtoll.restype = ctypes.c_longlong
LIBC.strtoll.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int]


@given(st.text(alphabet=" \t+-0123456789x.;a", max_size=30))
def test_strtoll_is_cs(text: str) -> None:
    assert strtoll(text) == LIBC.strtoll(text.encode(), None, 10)


@given(int64, int64, st.sampled_from("+-*/"))
def test_operators_are_64_bit_c_arithmetic(a: int, b: int, op: str) -> None:
    got = placeholder_math(f"x {op} y", {"x": str(a), "y": str(b)}.get)
    if op == "/":
        if b == 0:
            assert got == "0"
            return
        exact = trunc(Fraction(a, b))  # C truncates towards zero
        expected = ctypes.c_int64(exact).value  # (MIN / -1 wraps, where C would trap)
    else:
        expected = ctypes.c_int64({"+": a + b, "-": a - b, "*": a * b}[op]).value
    assert got == str(expected)


@given(st.lists(st.tuples(st.sampled_from("+-*"), st.integers(0, 10**6)), max_size=8),
       st.integers(0, 10**6))
def test_evaluation_is_left_to_right_without_precedence(steps, first) -> None:
    expression = " ".join([str(first), *(f"{op} {n}" for op, n in steps)])
    expected = first
    for op, n in steps:
        expected = ctypes.c_int64({"+": expected + n, "-": expected - n,
                                   "*": expected * n}[op]).value
    assert placeholder_math(expression, {}.get) == str(expected)


@given(st.lists(st.sampled_from(["foo", "bar", "Z", "sp", "7", "007"]), min_size=2, max_size=6))
def test_terms_without_operators_join_as_text(terms) -> None:
    joined = "".join(t if t[0].isdigit() else VALUES[t] for t in terms)
    assert placeholder_math(" ".join(terms), VALUES.get) == joined


@given(st.text(alphabet="ab()%$ x", max_size=20).filter(lambda t: "%(" not in t))
def test_text_without_an_opening_is_unchanged(text: str) -> None:
    assert expand(text) == text
