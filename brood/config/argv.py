"""uWSGI's command-line syntax (getopt_long style) turned into typed option values.

Forms accepted: ``--opt value``, ``--opt=value``, ``-s value``, ``-svalue`` and grouped
short flags (``-Mp 4``, ``-Mp4``: flags first, the last letter may take a value). A bare
boolean is True; a value for a boolean needs ``=`` (``--master=0``), so a bare ``--master``
never swallows the next word. ``optional`` options given bare take their ``implicit`` value.
A positional argument naming an ini file (``*.ini``, ``file.ini:section`` or any existing
file) means ``--ini`` with it. ``--`` ends the options.

This module does no file I/O beyond asking whether a positional names a file; ``--ini``
entries come back like any other for ``load`` to read in place. ``read_argv`` gives the
raw strings, each under the name as written (uWSGI's --show-config prints that one);
``parse_argv`` the typed values.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from typing import Any

from brood.config.option import Option, OptionError, all_names, lookup, lookup_short


def unknown_option(name: str, where: str = "") -> OptionError:
    """The error for an unknown long option, suggesting the closest declared name."""
    close = difflib.get_close_matches(name, all_names(), n=1, cutoff=0.6)
    hint = f" (did you mean --{close[0]}?)" if close else ""
    prefix = f"{where}: " if where else ""
    return OptionError(f"{prefix}unknown option --{_printable(name)}{hint}")


def _printable(text: str) -> str:
    """Keep error messages on one line whatever the user typed (and a space at either
    end seen: uWSGI's ``set = processes = 3`` makes the name ``processes ``)."""
    return text if text.isprintable() and text == text.strip() else repr(text)


def bare_value(opt: Option, shown: str) -> Any:
    """The value of ``opt`` given without one: True for flags, ``implicit`` for optional
    options; OptionError when it needs a value. ``shown`` is how the user wrote it."""
    if opt.kind == "bool":
        return True
    if opt.optional:
        return opt.convert(opt.implicit if opt.implicit is not None else "")
    raise OptionError(f"{shown} needs a value")


def _is_bool_word(word: str) -> bool:
    """A flag declared ``value_follows`` (uWSGI 2.0's ``--auto-weight 1``) takes the next
    word when it is a boolean literal, and only then."""
    return word.strip().lower() in {"1", "0", "true", "false", "yes", "no", "on", "off"}


@dataclass(frozen=True)
class Given:
    """One option of the command line, before its value is typed."""

    opt: Option
    key: str  # as written: a long name or alias; a short letter gives the option's name
    value: str | None  # None: given bare
    shown: bool = True  # False for a positional file.ini: read, not an option given

    def typed(self) -> Any:
        """The value as the option's kind reads it (OptionError naming it)."""
        if self.value is None:
            return bare_value(self.opt, f"--{self.key}")
        return self.opt.convert(self.value)


def parse_argv(argv: list[str]) -> list[tuple[Option, Any]]:
    """(option, typed value) in command-line order; OptionError on the first mistake."""
    return [(given.opt, given.typed()) for given in read_argv(argv)]


def read_argv(argv: list[str]) -> list[Given]:
    """Each option of ``argv`` with its raw value, in order; OptionError on an unknown
    option or a missing value."""
    given: list[Given] = []
    words = list(argv)
    i = 0
    only_positionals = False
    while i < len(words):
        word = words[i]
        i += 1
        if only_positionals or word == "-" or not word.startswith("-"):
            given.append(_positional(word))
        elif word == "--":
            only_positionals = True
        elif word.startswith("--"):
            i = _long(word[2:], words, i, given)
        else:
            i = _shorts(word[1:], words, i, given)
    return given


def _long(body: str, words: list[str], i: int, given: list[Given]) -> int:
    name, eq, value = body.partition("=")
    opt = lookup(name)
    if opt is None:
        raise unknown_option(name)
    if eq:
        given.append(Given(opt, name, value))
    elif opt.extra.get("value_follows") and i < len(words) and _is_bool_word(words[i]):
        given.append(Given(opt, name, words[i]))
        i += 1
    elif not opt.takes_value:
        given.append(Given(opt, name, None))
    elif i < len(words) and not _names_option(words[i]):
        given.append(Given(opt, name, words[i]))
        i += 1
    else:
        raise OptionError(f"--{name} needs a value")
    return i


def _shorts(letters: str, words: list[str], i: int, given: list[Given]) -> int:
    for pos, letter in enumerate(letters):
        opt = lookup_short(letter)
        if opt is None:
            raise OptionError(f"unknown option -{_printable(letter)}")
        if not opt.takes_value:
            given.append(Given(opt, opt.name, None))
            continue
        rest = letters[pos + 1 :]
        if rest:
            given.append(Given(opt, opt.name, rest))
        elif i < len(words) and not _names_option(words[i]):
            given.append(Given(opt, opt.name, words[i]))
            i += 1
        else:
            raise OptionError(f"-{letter} (--{opt.name}) needs a value")
        break
    return i


def _names_option(word: str) -> bool:
    """A following ``--known-option`` is a forgotten value, not the value itself."""
    return word.startswith("--") and lookup(word[2:].partition("=")[0]) is not None


# Config formats uWSGI reads besides ini (by extension), that brood does not.
OTHER_FORMATS = (".yaml", ".yml", ".json", ".js", ".xml")


def _positional(word: str) -> Given:
    ini = lookup("ini")
    path = word.rpartition(":")[0] if ".ini:" in word else word
    if path.lower().endswith(OTHER_FORMATS):
        raise OptionError(f"{word}: brood reads ini files only (uWSGI's YAML, JSON and XML "
                          "configs are not read): write it as an ini file")
    if ini is not None and (path.endswith(".ini") or os.path.isfile(word)):
        return Given(ini, "ini", word, shown=False)
    raise OptionError(f"unexpected argument {word!r} (options start with --)")
