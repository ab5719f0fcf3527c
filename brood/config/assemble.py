"""One load's config, assembled as uWSGI 2.0 assembles its own; what --show-config prints.

How it works: every key = value of every source goes through ``Assembler.add`` in the
order uWSGI reads them: the ``UWSGI_*`` variables, then the command line, each ini file
where it is named (``ini =`` and ``include =`` read theirs at once, in place). Config
logic runs as keys arrive (``brood.config.logic``). Once everything is in, ``finish``
expands the values (``brood.config.expand``: ``$(VAR)``, then ``@(...)``, then
``%(name)``) and then reads the templates named by ``inherit``: their keys come last
and are not expanded, as uWSGI reads templates after its expansion passes.

``set-ph``/``set-placeholder NAME=VALUE`` adds a placeholder kept as written (NAME may
not be an option); ``set NAME=VALUE`` adds ``NAME = VALUE`` as if written so (an option
or a placeholder). ``ini = :section`` reads another section of the last file read (an
include's, if one came since).

Where brood is stricter than uWSGI (each would run a file that means something else
than it seems, or nothing): a block opened inside another (uWSGI stops only when the
outer one lets the inner opener through: it never nests blocks), a block a file leaves
open (uWSGI carries it into what it reads next), an ``endif``/``endfor`` with no block
open (uWSGI ignores it), a condition with no argument, an include loop, more than
``MAX_KEYS`` keys or ``MAX_TEXT`` of text in one config (uWSGI grows until the memory
runs out).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from brood.config.expand import placeholder, scan
from brood.config.ini import MAX_INI, UNDECODED_RE, magic_table, parse_ini, read_text, split_spec
from brood.config.logic import (
    END_ANY,
    ENDS,
    MAX_KEYS,
    NO_ARGUMENT,
    OPENERS,
    Block,
    LogicContext,
    substitute,
)
from brood.config.option import OptionError, lookup
from brood.config.sources import read_source
from brood.config.uwsgi_names import UWSGI_OPTIONS

# Options uWSGI applies as it reads them: their values are never expanded.
IMMEDIATE = frozenset((
    "ini", "include", "set", "set-placeholder", "set-ph", "plugins", "plugin", "strict",
    "listen", "reload", "stop", "yaml", "yml", "json", "js", "xml", "xmlconfig", "help",
    "usage", "version",
))
_PLACEHOLDER_KEYS = ("set-placeholder", "set-ph")
# The most text (keys and values) one load assembles: 16 ini files at their largest. A
# loop of includes, or values that double each other through %(name), stop here with a
# line instead of taking the memory (uWSGI grows until it runs out).
MAX_TEXT = 16 * MAX_INI


@dataclass
class Entry:
    """One key = value of the assembled config."""

    key: str  # as written (uWSGI's spelling: --workers stays workers)
    value: str | None  # None: given bare
    where: str  # "file:line", "$UWSGI_NAME", or "" for the command line
    origin: str  # "ini", "env" or "argv"
    expand: bool = True  # the expansion passes apply to it
    option: bool = True  # an option (or unknown key) for the option table
    shown: bool = True  # part of uWSGI's config (a positional ini file is not)
    from_set: bool = False  # made by set NAME=VALUE
    chain: tuple[tuple[str, str], ...] = ()  # the files being read when it came

    def placeholder_value(self) -> str | None:
        """What ``%(key)`` gives: a bare command-line flag has no value (uWSGI's NULL);
        a bare ini key is empty."""
        if self.value is None and self.origin != "argv":
            return ""
        return self.value

    def shown_value(self) -> str:
        """The value as --show-config prints it (uWSGI's ``true`` for a bare flag)."""
        if self.value is None:
            return "true" if self.origin == "argv" else ""
        return self.value


class Assembler:
    """Takes keys in reading order; ``finish`` gives the assembled, expanded entries."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.entries: list[Entry] = []
        self.block: Block | None = None
        self.inside = 0  # > 0 while a block's key is added (files it reads run no logic)
        self.reading: list[tuple[str, str]] = []  # (real path, section) being read
        self.ini_files: list[str] = []
        self.last_file: str | None = None
        self.first_magic: dict[str, str] | None = None
        self.referenced: set[str] = set()  # names some %(name) or if-opt looked up
        self._first: dict[str, Entry] = {}  # key -> its first entry (placeholder lookups)
        self._first_alike: dict[str, Entry] = {}  # the same with "_" read as "-"
        self.size = 0  # the characters of every key and value (MAX_TEXT)
        self.ctx = LogicContext(environ, self._if_opt)

    @property
    def notes(self) -> list[str]:
        """Lines for the log: what uWSGI goes on without (a for-readline file missing)."""
        return self.ctx.notes

    # -- taking keys ---------------------------------------------------------------------

    def add(self, key: str, value: str | None, where: str, origin: str,
            shown: bool = True) -> None:
        """One key as read, through the logic (uWSGI's add_exported_option)."""
        if self.inside:  # a key of a file a block's key reads: no logic, as in uWSGI
            if key in ENDS and self.block is not None:
                raise OptionError(f"{_at(where)}{key} in a file read from inside the "
                                  f"{self.block.key} block of {_opened(self.block)}: "
                                  "uWSGI runs no config logic there")
            self._record(Entry(key, value, where, origin, shown=shown))
        elif key in ENDS or (key == END_ANY and self.block is not None):
            self._end(key, value, where, origin)
        elif self.block is not None:
            self._in_block(key, value, where, origin)
        else:
            self._record(Entry(key, value, where, origin, shown=shown))

    def read(self, spec: str, where: str) -> None:
        """Read ``file[:section]`` here (``ini``, ``include``, a positional file)."""
        path, section = split_spec(spec)
        if not path:
            if self.last_file is None:
                raise OptionError(f"{_at(where)}ini {spec}: no file was read before to "
                                  f"take [{section}] from")
            path = self.last_file
        real = os.path.realpath(path)
        if (real, section) in self.reading:
            chain = [p for p, _ in self.reading] + [real]
            raise OptionError(f"--ini: include loop: {' -> '.join(chain)}")
        table = magic_table(path, section, self.first_magic)
        if self.first_magic is None:
            self.first_magic = table
        try:
            text = read_text(path)
        except OptionError as exc:
            if any(f"{s}(" in path for s in "$@%"):  # (earlier brood releases expanded them)
                raise OptionError(f"{exc} (uWSGI reads ini/include as written, at once: "
                                  "no $(VAR), @() or %(name) there; inherit is expanded)") from None
            raise
        lines = parse_ini(text, path, section, table)
        self.ini_files.append(os.path.abspath(path))
        self.last_file = path
        self.reading.append((real, section))
        try:
            for line in lines:
                self.add(line.key, line.value, line.where, "ini")
            if not self.inside:
                self.end_of_source()
        finally:
            self.reading.pop()

    def end_of_source(self) -> None:
        """A file, the variables or the command line ended: no block may stay open."""
        if self.block is not None:
            block, self.block = self.block, None
            raise OptionError(f"{_at(_opened(block))}{block.key} is never closed (by "
                              f"{'endfor' if block.key.startswith('for') else 'endif'})")

    # -- the logic ----------------------------------------------------------------------

    def _end(self, key: str, value: str | None, where: str, origin: str) -> None:
        if self.block is None:
            raise OptionError(f"{_named(where, key)} without a for or if-* block open")
        self.block = None
        self._record(Entry(key, value, where, origin, expand=False, option=False))

    def _in_block(self, key: str, value: str | None, where: str, origin: str) -> None:
        block = self.block
        assert block is not None
        if key in OPENERS:
            raise _nested(key, where, block)
        try:
            runs = block.runs(self.ctx)
        except OptionError as exc:
            raise OptionError(f"{_at(block.where)}{block.key}: {exc}") from None
        self.inside += 1
        try:
            for item in runs:
                self._record(Entry(key, substitute(value, item), where, origin))
        finally:
            self.inside -= 1

    def _open(self, entry: Entry) -> None:
        if self.block is not None:
            raise _nested(entry.key, entry.where, self.block)
        if not entry.value and entry.key not in NO_ARGUMENT:
            raise OptionError(f"{_named(entry.where, entry.key)} needs a value")
        self.block = Block(entry.key, entry.value or "", entry.where)

    def _if_opt(self, name: str) -> str | None:
        self.referenced.add(name)
        found = self.find(name)
        return None if found is None else found.placeholder_value()

    # -- recording, and the options uWSGI applies at once ---------------------------------

    def _record(self, entry: Entry) -> None:
        if UNDECODED_RE.search(f"{entry.key}{entry.value or ''}"):  # (only keys taken)
            # (a word of the command line or the environment too: a procname of latin-1
            # bytes stopped the master with a traceback)
            where = entry.where or f"--{entry.key}"
            raise OptionError(f"{where}: not UTF-8 text")
        entry.chain = tuple(self.reading)
        self._append(entry)
        key = entry.key
        if key in OPENERS:
            entry.expand = entry.option = False
            self._open(entry)
        elif key in ("ini", "include"):
            entry.expand, entry.option = False, key == "ini"
            if not entry.value:
                raise OptionError(f"{_named(entry.where, key)} needs a file")
            self.read(entry.value, entry.where)
        elif key == "inherit":
            entry.option = False  # read by finish(), its value expanded by then
        elif key in ("set", *_PLACEHOLDER_KEYS):
            entry.expand = entry.option = False
            self._set(entry)
        elif key in IMMEDIATE:
            entry.expand = False

    def _set(self, entry: Entry) -> None:
        # (as written around the "=": uWSGI's set = processes = 3 sets "processes ")
        name, eq, text = (entry.value or "").partition("=")
        if not eq or not name.strip():
            opt = lookup(entry.key)
            shown = f"--{opt.name if opt else entry.key} {entry.value or ''}".rstrip()
            raise OptionError(f"{entry.where}: {entry.key} wants NAME=VALUE" if entry.where
                              else f"{shown}: expected NAME=VALUE")
        if entry.key == "set":
            self._append(Entry(name, text, entry.where or f"--{entry.key}",
                                      entry.origin, from_set=True, chain=entry.chain))
            return
        if lookup(name) is not None or name in UWSGI_OPTIONS:
            said = _at(entry.where) or "--"
            raise OptionError(f"{said}{entry.key} {name}={text}: {name} is an option, not "
                              "a placeholder (uWSGI refuses it too): use set")
        self._append(Entry(name, text, entry.where, entry.origin, expand=False,
                           option=False, chain=entry.chain))

    def _append(self, entry: Entry) -> None:
        if len(self.entries) >= MAX_KEYS:
            raise OptionError(f"{_at(entry.where)}more than {MAX_KEYS} keys in one config "
                              "(a loop or include that keeps adding them?)")
        self._grow(len(entry.key) + len(entry.value or ""), entry.where)
        self.entries.append(entry)
        if entry.shown:  # (a positional file is no option uWSGI was given)
            self._first.setdefault(entry.key, entry)
            self._first_alike.setdefault(entry.key.replace("_", "-"), entry)

    def _grow(self, size: int, where: str) -> None:
        self.size += size
        if self.size > MAX_TEXT:
            raise OptionError(f"{_at(where)}more than {MAX_TEXT >> 20} MiB of keys and "
                              "values in one config (a loop, include or value that keeps "
                              "growing?)")

    def find(self, name: str) -> Entry | None:
        """The first entry named ``name`` (uWSGI's lookup; ``_`` and ``-`` alike when
        the name as written is not there, as brood reads option names)."""
        found = self._first.get(name)
        return found if found is not None else self._first_alike.get(name.replace("_", "-"))

    # -- expansion and templates ----------------------------------------------------------

    def finish(self) -> list[Entry]:
        """Expand every value (uWSGI's three passes), then read the templates."""
        self._pass("$", self.environ.get)
        self._pass("@", read_source)
        self._pass("%", lambda name: placeholder(name, self._placeholder))
        self._templates()
        return self.entries

    def _placeholder(self, name: str) -> str | None:
        self.referenced.add(name)
        found = self.find(name)
        return None if found is None else found.placeholder_value()

    def _pass(self, symbol: str, hook: Callable[[str], str | None]) -> None:
        opening = symbol + "("
        for entry in self.entries:
            if entry.expand and entry.value is not None and opening in entry.value:
                before = len(entry.value)
                try:
                    entry.value = scan(entry.value, symbol, hook)
                except OptionError as exc:
                    raise OptionError(f"{_at(entry.where)}{exc}") from None
                self._grow(len(entry.value) - before, entry.where)

    def _templates(self) -> None:
        """``inherit = file`` read last, in the order named (uWSGI applies them after
        everything else, and does not expand their values)."""
        expanded = len(self.entries)
        index = 0
        while index < len(self.entries):
            entry = self.entries[index]
            index += 1
            if entry.key != "inherit" or entry.option:
                continue
            if not entry.value:
                raise OptionError(f"{_named(entry.where, 'inherit')} needs a file")
            saved, self.reading = self.reading, list(entry.chain)
            try:
                self.read(entry.value, entry.where)
            finally:
                self.reading = saved
        for entry in self.entries[expanded:]:
            if entry.expand and entry.value and any(f"{s}(" in entry.value for s in "$@%"):
                self.notes.append(f"{_at(entry.where)}{entry.key} = {entry.value}: not "
                                  "expanded (a template read by inherit comes after the "
                                  "expansion, as in uWSGI)")


def _at(where: str) -> str:
    return f"{where}: " if where else ""


def _named(where: str, key: str) -> str:
    """``file:line: key``, or ``--key`` for the command line."""
    return f"{where}: {key}" if where else f"--{key}"


def _opened(block: Block) -> str:
    return block.where or f"--{block.key} {block.arg}".rstrip()


def _nested(key: str, where: str, block: Block) -> OptionError:
    return OptionError(f"{_at(where)}{key} inside the {block.key} block opened at "
                       f"{_opened(block)}: "
                       "uWSGI does not nest config logic (it stops there too): close the "
                       "block first")


def show_config(entries: list[tuple[str, str]]) -> str:
    """The assembled config in uWSGI's --show-config format."""
    body = "".join(f"{key} = {value}\n" for key, value in entries)
    return f"\n;uWSGI instance configuration\n[uwsgi]\n{body};end of configuration\n\n"
