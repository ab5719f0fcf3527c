"""``$(VAR)``, ``@(...)`` and ``%(name)`` in config values, expanded as uWSGI 2.0 does.

Once the whole config is assembled (every file, variable and command-line option),
uWSGI makes three passes over the values, in order: ``$(VAR)`` (the environment),
``@(...)`` (what a file, a command... reads: ``brood.config.sources``), then
``%(name)`` (placeholders). So ``@($(DIR)/x)`` reads the file the variable names, a
placeholder sees values already past the first two passes, and an ``@()`` or
``%()`` result is not searched for ``$(...)`` again. Values of the options uWSGI
applies as they are read (``ini``, ``set-ph``, ``listen``, the logic keys...) are not
expanded at all.

How a pass reads a value (uWSGI's scan, quirks included, so a value means the same):
the symbol then ``(`` opens a name that runs to the matching ``)`` (nested parentheses
are part of it; another symbol inside starts over from there). A name that finds
nothing (an unset variable, an unknown placeholder) is left as written; an empty one
too. After each replacement the scan starts again at the value's second character: a
result is searched again for more, except at the very start of the value.

``%(name)`` is the first value given to ``name``. With a space inside it is a small
expression read left to right: terms are whole numbers (digits only), ``++``/``--``
(add or take one), or names (their value; an unknown one is empty); ``+ - * /`` apply
to the next term, as 64-bit integers (C's ``strtoll`` reads the operands: a value that
is no number is 0; a quotient is truncated; dividing by zero gives 0; overflow wraps);
terms with no operator between them are joined as text:
``%(foo + bar + 3 * 2)`` is ((foo + bar) + 3) * 2, ``%(foo bar ++)`` joins and adds one.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from brood.config.option import OptionError

# A value that keeps finding names (``a = x%(a)`` refers to itself) ends here: uWSGI
# grows it until memory runs out. Each replacement rescans the value from its start
# (uWSGI's quirk), so this bounds the work as much as the size: 1000 of 1 MiB.
MAX_REPLACEMENTS = 1000
MAX_VALUE = 1 << 20

_INT64 = 1 << 64
_INT64_MAX = (1 << 63) - 1
_INT64_MIN = -(1 << 63)
_STRTOLL = re.compile(r"[ \t\n\v\f\r]*([+-]?)([0-9]+)")

Hook = Callable[[str], "str | None"]


def scan(value: str, symbol: str, hook: Hook) -> str:
    """``value`` with every ``<symbol>(name)`` replaced by ``hook(name)`` (kept as
    written when the hook gives None); OptionError when it never ends.

    uWSGI's scan reads a character at a time; this one jumps to the next opening, and
    inside a name to the next parenthesis or symbol, with the same outcome."""
    opening = symbol + "("
    inside = re.compile(f"[(){re.escape(symbol)}]")
    replaced = 0
    j = value.find(opening)
    while j >= 0:
        start = j + 2
        depth = 0
        at = start
        while (found := inside.search(value, at)) is not None:
            at = found.end()
            char = found.group()
            if char == symbol:  # starts over from there
                break
            if char == "(":
                depth += 1
            elif depth:
                depth -= 1
            else:
                break
        else:
            return value  # a name that never closes: nothing further is replaced
        if char == symbol:
            j = value.find(opening, at - 1)
            continue
        name = value[start:at - 1]
        result = hook(name) if name else None
        if result is None:
            j = value.find(opening, at)
            continue
        value = value[:j] + result + value[at:]
        replaced += 1
        if replaced > MAX_REPLACEMENTS or len(value) > MAX_VALUE:
            raise OptionError(f"{symbol}(...) keeps expanding (more than "
                              f"{MAX_REPLACEMENTS} replacements or {MAX_VALUE >> 20} MiB: "
                              "a value that refers to itself?)")
        j = value.find(opening, 1)  # uWSGI starts again past the first character
    return value


def strtoll(text: str) -> int:
    """C's strtoll in base 10: leading blanks, a sign, digits; 0 when there are none;
    clamped to 64 bits."""
    match = _STRTOLL.match(text)
    if match is None:
        return 0
    number = int(match.group(2)) * (-1 if match.group(1) == "-" else 1)
    return max(_INT64_MIN, min(_INT64_MAX, number))


def _wrap(number: int) -> int:
    """Two's-complement 64-bit wrap-around, as the C arithmetic gives in practice."""
    return (number - _INT64_MIN) % _INT64 + _INT64_MIN


def _apply(op: str, left: int, right: int) -> int:
    if op == "+":
        return _wrap(left + right)
    if op == "-":
        return _wrap(left - right)
    if op == "*":
        return _wrap(left * right)
    if right == 0:  # uWSGI's answer for a division by zero
        return 0
    quotient = abs(left) // abs(right)  # truncated towards zero, as C divides
    return _wrap(quotient if (left < 0) == (right < 0) else -quotient)


_OPERATORS = frozenset("+-*/")


def placeholder_math(expression: str, lookup: Callable[[str], str | None]) -> str | None:
    """The value of ``%(expression)`` when it holds a space (see the module's doc);
    None when it has no term at all (``%( + )``: kept as written)."""
    current: str | None = None
    op = ""  # "" joins as text
    for token in expression.split(" "):
        if not token:
            continue
        if token in _OPERATORS:
            op = token
            continue
        if token in ("++", "--"):
            if current is not None:
                current = str(_wrap(strtoll(current) + (1 if token == "++" else -1)))
            op = ""
            continue
        term = token if token.isascii() and token.isdigit() else (lookup(token) or "")
        if op:
            current = str(_apply(op, strtoll(current or ""), strtoll(term)))
        else:
            current = (current or "") + term
        op = ""
    return current


def placeholder(name: str, lookup: Callable[[str], str | None]) -> str | None:
    """The value of ``%(name)``: a plain name, or an expression when it holds a space."""
    if " " not in name:
        return lookup(name)
    return placeholder_math(name, lookup)
