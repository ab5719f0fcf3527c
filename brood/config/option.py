"""The shape of one option declaration, and the registry every part declares into.

Each option is declared exactly once, in the module of ``brood/config/options/`` that
belongs to the part reading it. The command line, ini loading and ``--help`` are all
derived from these declarations; nothing else names an option's type or default.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any


class OptionError(ValueError):
    """A user's mistake in options: unknown name, bad value, missing file.

    The message is one line, already naming the option; the CLI prints it and exits 1.
    """


# Value kinds. A converter turns the raw string (argv or ini) into the typed value and
# raises ValueError with a short reason when it cannot.
_FALSE = {"0", "false", "no", "off"}


def to_bool(raw: str) -> bool:
    """As uWSGI reads a flag's value: false for 0/false/no/off, true for anything else,
    the empty value (``vacuum =``) included, so an ini file means what it meant there."""
    return raw.strip().lower() not in _FALSE


_INLINE_COMMENT = re.compile(r"\s+[;#].*\Z", re.DOTALL)


def _number_text(raw: str) -> str:
    """A number's text without a trailing comment (``processes = 4 ; web``): uWSGI
    reads numbers with atoi, which stops there, so such ini files run on it."""
    return _INLINE_COMMENT.sub("", raw.strip())


def to_int(raw: str) -> int:
    text = _number_text(raw)
    try:
        return int(text, 0) if text.lower().startswith("0x") else int(text)
    except ValueError:
        raise ValueError(f"expected a whole number, got {raw!r}") from None


def to_float(raw: str) -> float:
    try:
        return float(_number_text(raw))
    except ValueError:
        raise ValueError(f"expected a number, got {raw!r}") from None


_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def to_size(raw: str) -> int:
    """A byte count, with an optional k/m/g suffix as uWSGI accepts (``64k``, ``1M``)."""
    text = _number_text(raw).lower().removesuffix("b")
    unit = text[-1:] if text[-1:] in ("k", "m", "g") else ""
    number = text[: len(text) - len(unit)]
    try:
        return int(number) * _SIZE_UNITS[unit]
    except ValueError:
        raise ValueError(f"expected a size such as 4096, 64k or 1m, got {raw!r}") from None


def to_mode(raw: str, option: str, example: str) -> int:
    """An octal file mode (``660``) given to ``--option``; OptionError naming it."""
    try:
        mode = int(str(raw).strip(), 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o7777:
        raise OptionError(f"--{option} {raw}: expected an octal mode such as {example}")
    return mode


def to_str(raw: str) -> str:
    return raw


CONVERTERS: dict[str, Callable[[str], Any]] = {
    "str": to_str,
    "int": to_int,
    "float": to_float,
    "bool": to_bool,
    "size": to_size,
}


@dataclass(frozen=True)
class Option:
    """One command-line / ini option.

    ``name`` is uWSGI's long name without dashes (``http-to``). ``part`` says which part
    reads it (``core``, ``workers``, ``http``, ``fastrouter``...); ``--help`` groups by it.
    ``multi`` options may repeat and always read as a list. A ``bool`` option given bare on
    the command line is True; ``optional`` options of other kinds may also be given bare,
    and then take ``implicit``. ``refused`` (a reason) marks an option brood parses, so
    uWSGI ini files load, but will not run with: setting it stops start-up with one line
    naming it (``refuse_unavailable``), never a feature silently left out.
    """

    name: str
    part: str
    help: str
    kind: str = "str"
    default: Any = None
    short: str | None = None
    aliases: tuple[str, ...] = ()
    multi: bool = False
    optional: bool = False
    implicit: str | None = None
    metavar: str = ""
    choices: tuple[str, ...] = ()
    refused: str = ""
    high: float | None = None  # the largest number taken (numbers are never negative)
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def convert(self, raw: str) -> Any:
        """Typed value of ``raw``; OptionError naming the option when it is not valid."""
        try:
            value = CONVERTERS[self.kind](raw)
        except ValueError as exc:
            raise OptionError(f"--{self.name}: {exc}") from None
        if self.kind in _NUMBERS:
            if value < 0:
                raise OptionError(f"--{self.name} {raw.strip()}: must be 0 or more")
            if self.high is not None and value > self.high:
                raise OptionError(f"--{self.name} {raw.strip()}: must be {int(self.high)} "
                                  "or less")
        if self.choices and value not in self.choices:
            raise OptionError(
                f"--{self.name}: {raw!r} is not one of {', '.join(self.choices)}"
            )
        return value

    @property
    def takes_value(self) -> bool:
        return self.kind != "bool" and not self.optional


_NUMBERS = ("int", "float", "size")
# Processes of one kind at most: router processes (far past any machine's cores), and
# workers (big machines run thousands); short of forking the machine to death over a
# typo.
MAX_PROCESSES = 1024
MAX_WORKERS = 16384

# name or alias -> Option. Filled by brood.config.options at import.
_REGISTRY: dict[str, Option] = {}
_SHORT: dict[str, Option] = {}
_DECLARED: list[Option] = []


def declare(options: Iterable[Option]) -> None:
    """Add options to the table; a name declared twice is a programming error."""
    for opt in options:
        assert opt.kind in CONVERTERS, f"{opt.name}: unknown kind {opt.kind}"
        for name in (opt.name, *opt.aliases):
            if name in _REGISTRY:
                raise AssertionError(f"option --{name} declared twice")
            _REGISTRY[name] = opt
        if opt.short:
            if opt.short in _SHORT:
                raise AssertionError(f"short option -{opt.short} declared twice")
            _SHORT[opt.short] = opt
        _DECLARED.append(opt)


def lookup(name: str) -> Option | None:
    """The option called ``name`` (long name or alias, dashes or underscores)."""
    return _REGISTRY.get(name.replace("_", "-"))


def lookup_short(letter: str) -> Option | None:
    return _SHORT.get(letter)


def all_options() -> list[Option]:
    """Every declared option, in declaration order."""
    return list(_DECLARED)


def all_names() -> list[str]:
    return list(_REGISTRY)
