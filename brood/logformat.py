"""uWSGI ``%(name)`` log line templates, compiled once: shared by the HTTP router's
``--http-log-format`` and the workers' ``--log-format``.

How it works: ``parse_format`` splits the template into literal strings and ``Var``
pieces, asking the caller's ``lookup`` about each name, so an unknown (or unclosed)
``%(`` is refused at start-up with an OptionError naming the option. ``LineFormat``
then compiles the pieces into one %-template (literal ``%`` doubled) and a tuple of
getters, one per variable: rendering a line is one tuple build and one ``%``. Each
user keeps its own variable table (``lookup``: name -> getter of its own record type,
or None for an unknown name).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from brood.config.option import OptionError

T = TypeVar("T")
Getter = Callable[[Any], str]
Lookup = Callable[[str], "Getter | None"]


@dataclass(frozen=True, slots=True)
class Var:
    """A ``%(name)`` piece of a format."""

    name: str


def parse_format(fmt: str, lookup: Lookup, option: str) -> list[str | Var]:
    """``fmt`` as literal strings and ``Var`` pieces, in order (adjacent literals
    merged). OptionError naming ``--option`` for an unclosed ``%(`` or a name ``lookup``
    does not know."""
    pieces: list[str | Var] = []
    literal = ""
    pos = 0
    while True:
        start = fmt.find("%(", pos)
        if start < 0:
            literal += fmt[pos:]
            break
        end = fmt.find(")", start + 2)
        if end < 0:
            raise OptionError(f"--{option}: unclosed %( at offset {start}")
        name = fmt[start + 2:end]
        if lookup(name) is None:
            raise OptionError(f"--{option}: unknown variable %({name})")
        literal += fmt[pos:start]
        if literal:
            pieces.append(literal)
            literal = ""
        pieces.append(Var(name))
        pos = end + 1
    if literal:
        pieces.append(literal)
    return pieces


class LineFormat(Generic[T]):
    """Parsed pieces compiled for rendering records of type ``T``. ``empty``, when
    given, stands in for a variable whose value is the empty string (uWSGI's workers
    write ``-`` there)."""

    __slots__ = ("pieces", "template", "getters", "empty")

    def __init__(self, pieces: list[str | Var], lookup: Lookup, empty: str = "") -> None:
        self.pieces = pieces
        self.template = "".join(p.replace("%", "%%") if isinstance(p, str) else "%s"
                                for p in pieces)
        getters = []
        for piece in pieces:
            if isinstance(piece, Var):
                get = lookup(piece.name)
                if get is None:  # parse_format refused it already; pieces built by hand
                    raise ValueError(f"unknown variable %({piece.name})")
                getters.append(get)
        self.getters: tuple[Getter, ...] = tuple(getters)
        self.empty = empty

    def render(self, record: T) -> str:
        if self.empty:
            empty = self.empty
            return self.template % tuple([get(record) or empty for get in self.getters])
        return self.template % tuple([get(record) for get in self.getters])

    def names(self) -> set[str]:
        """The variable names the format uses."""
        return {p.name for p in self.pieces if isinstance(p, Var)}
