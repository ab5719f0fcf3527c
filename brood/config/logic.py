"""uWSGI's config logic: ``for`` loops and ``if-*`` blocks, as uWSGI 2.0 runs them.

How it works: logic is flat, one block at a time. An opener (``for = a b``,
``if-exists = /x``) starts a block; every key up to the next ``endfor``/``end-for``/
``endif``/``end-if``/``end`` (any of them ends any block) is given to the block, which
yields it once per loop item, once for a true condition, or not at all; ``%(_)`` in its
value becomes the item or the condition's value. The block asks again for each key
(a file made, an option set by an earlier key of the block count), as uWSGI does.

Arguments are read as written: uWSGI runs logic as each line arrives, before any
``$(VAR)``, ``@(...)`` or ``%(name)`` is expanded (an ini file's magic ``%d``... is).

``for`` splits on spaces; ``for-glob`` lists what a glob matches (sorted, directories
with a trailing ``/``; the pattern itself when nothing does); ``for-times = N`` counts
1..N; ``for-readline`` yields the lines of a file (read in pieces of at most 1023 bytes,
line ends dropped); a loop of more than ``MAX_KEYS`` items is refused. ``if-exists``
(readable), ``if-file``, ``if-dir``, ``if-env`` (``NAME`` or ``NAME=VALUE``), ``if-opt``
(an option or placeholder given before, same forms), ``if-hostname``,
``if-hostname-match`` (a regular expression searched in the host name), ``if-plugin``
and ``if-reload`` each have an ``if-not-`` twin; ``ifenv``, ``ifexists``, ``ifdir``,
``if-directory`` and ``ifplugin`` are uWSGI's other spellings.
"""

from __future__ import annotations

import glob as _glob
import os
import re
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from brood.config.ini import MAX_INI, TooLarge, read_bounded
from brood.config.option import OptionError

# What if-plugin finds. uWSGI answers it by the names of the plugins loaded (its
# python3 plugin calls itself "python"; http, fastrouter, rawrouter and cache load the
# corerouter); brood has built in what it implements, as a monolithic uWSGI build has
# them, so it answers for those parts: the WSGI workers, the HTTP router, the
# fastrouter, the rawrouter (all on the shared router engine) and the cache. Not the
# sslrouter (refused in this release), nor router_* (uWSGI's internal routing actions:
# brood has no --route), nor any other.
PLUGINS = frozenset({"python", "http", "corerouter", "fastrouter", "rawrouter", "cache"})
# What --need-plugin loads is a file name: python3_plugin.so (Debian's python3,
# python311...) is the python plugin.
_PYTHON_PLUGIN = re.compile(r"python\d*")


def missing_plugins(lists: Iterable[str]) -> list[str]:
    """The names in --need-plugin's comma-separated LISTs brood has not built in."""
    names = (name.strip() for item in lists for name in str(item).split(","))
    return [name for name in names
            if name and name not in PLUGINS and not _PYTHON_PLUGIN.fullmatch(name)]


def check_plugins(lists: Iterable[str]) -> None:
    """OptionError naming the first --need-plugin brood has not built in (uWSGI stops
    when a plugin it needs will not load)."""
    missing = missing_plugins(lists)
    if missing:
        raise OptionError(f"--need-plugin {missing[0]}: a uWSGI plugin brood does not "
                          "have (it has python, http, corerouter, fastrouter, rawrouter "
                          "and cache built in)")
# Set by the master in the process it re-executes on a reload (brood.master_env's
# RELOADS_ENV; a test keeps them equal): if-reload is true there, and in the config
# check the master makes before it. The reload's app check (brood.master_appcheck)
# imports the app of a first start: an app chosen under if-reload is not the one checked.
RELOADS_VAR = "BROOD_RELOADS"
ENDS = frozenset({"endfor", "end-for", "endif", "end-if"})
# "end" ends a block too, but with none open it is a plain key (a placeholder), as in
# uWSGI: a name someone may well use.
END_ANY = "end"
# for-readline reads lines as fgets into 1024 bytes does, from a file of at most (far
# more than any list of backends; /dev/zero is none):
_READLINE_PIECE = 1023
MAX_LINES_FILE = MAX_INI
# The most keys one load assembles (far more than any real config; loops are what could
# make more): ``for-times = 10000000`` is refused before counting, not after 10 million
# keys took the memory (uWSGI adds them until it runs out).
MAX_KEYS = 100_000


@dataclass
class LogicContext:
    """What conditions look at: the environment, options given so far, the host."""

    environ: Mapping[str, str]
    option: Callable[[str], str | None]  # the first value given to a name, or None
    hostname: str = field(default_factory=socket.gethostname)
    notes: list[str] = field(default_factory=list)  # lines to log (a missing file...)

    @property
    def reloading(self) -> bool:
        return self.environ.get(RELOADS_VAR, "0") not in ("", "0")


# One run of a block for one key: the %(_) values to yield it with (None: yield it
# without substituting); empty: the key is dropped.
Runs = list[str | None]
Logic = Callable[[str, LogicContext], Runs]


def _for(arg: str, ctx: LogicContext) -> Runs:
    return [item for item in arg.split(" ") if item]


def _for_glob(arg: str, ctx: LogicContext) -> Runs:
    found = sorted(p + "/" if os.path.isdir(p) else p for p in _glob.glob(arg))
    return found or [arg]


def _for_times(arg: str, ctx: LogicContext) -> Runs:
    count = _atoi(arg)
    if count > MAX_KEYS:
        raise OptionError(f"{count} times is more than the {MAX_KEYS} keys a config may "
                          "have")
    return [str(n) for n in range(1, count + 1)]


def _for_readline(arg: str, ctx: LogicContext) -> Runs:
    try:
        data = read_bounded(arg)
    except TimeoutError as exc:  # (uWSGI waits for a FIFO's writer: no "no lines" here)
        raise OptionError(f"{arg}: {exc.strerror}") from None
    except OSError as exc:
        note = f"for-readline {arg}: {exc.strerror or exc}: no lines (as uWSGI)"
        if note not in ctx.notes:
            ctx.notes.append(note)
        return []
    except TooLarge:
        raise OptionError(f"{arg} is larger than {MAX_LINES_FILE >> 20} MiB: "
                          "no list of lines") from None
    lines: Runs = []
    at = 0
    # as fgets: through a newline, or 1023 bytes of a longer line (one past the most
    # keys is enough to refuse the loop)
    while at < len(data) and len(lines) <= MAX_KEYS:
        newline = data.find(b"\n", at, at + _READLINE_PIECE)
        stop = newline + 1 if newline >= 0 else min(at + _READLINE_PIECE, len(data))
        piece = data[at:stop].split(b"\0")[0].rstrip(b"\r\n")
        lines.append(piece.decode("utf-8", "surrogateescape"))
        at = stop
    return lines


def _atoi(text: str) -> int:
    """C's atoi: leading blanks, a sign, digits; anything else ends it (0 if none)."""
    match = re.match(r"[ \t\n\v\f\r]*([+-]?[0-9]+)", text)
    return int(match.group(1)) if match else 0


def _if(test: Callable[[str, LogicContext], bool], underscore: bool = True) -> Logic:
    """A condition on the argument, %(_) being the argument (or nothing)."""
    def run(arg: str, ctx: LogicContext) -> Runs:
        if not test(arg, ctx):
            return []
        return [arg if underscore else None]
    return run


def _if_value(lookup: Callable[[str, LogicContext], str | None], negate: bool) -> Logic:
    """if-env / if-opt and their twins: ``NAME`` or ``NAME=VALUE``; %(_) is the value
    found (nothing when there is none)."""
    def run(arg: str, ctx: LogicContext) -> Runs:
        name, eq, want = arg.partition("=")
        found = lookup(name, ctx)
        present = found is not None and (not eq or found == want)
        return [found] if present != negate else []
    return run


def _readable(path: str, ctx: LogicContext) -> bool:
    return os.access(path, os.R_OK)


def _hostname_match(pattern: str, ctx: LogicContext) -> bool:
    try:
        return re.search(pattern, ctx.hostname) is not None
    except re.error as exc:
        raise OptionError(f"not a regular expression: {pattern!r} ({exc})") from None


def _env(name: str, ctx: LogicContext) -> str | None:
    return ctx.environ.get(name)


def _opt(name: str, ctx: LogicContext) -> str | None:
    return ctx.option(name)


def _conditions() -> dict[str, Logic]:
    tests: dict[str, Callable[[str, LogicContext], bool]] = {
        "exists": _readable,
        "file": lambda a, c: os.path.isfile(a),
        "dir": lambda a, c: os.path.isdir(a),
        "hostname": lambda a, c: a == c.hostname,
        "hostname-match": _hostname_match,
        "plugin": lambda a, c: a in PLUGINS,
    }
    table: dict[str, Logic] = {}
    for name, test in tests.items():
        table[f"if-{name}"] = _if(test)
        table[f"if-not-{name}"] = _if(lambda a, c, t=test: not t(a, c))
    table["if-reload"] = _if(lambda a, c: c.reloading, underscore=False)
    table["if-not-reload"] = _if(lambda a, c: not c.reloading, underscore=False)
    for name, lookup in (("env", _env), ("opt", _opt)):
        table[f"if-{name}"] = _if_value(lookup, negate=False)
        table[f"if-not-{name}"] = _if_value(lookup, negate=True)
    for alias, name in (("ifenv", "if-env"), ("ifexists", "if-exists"), ("ifdir", "if-dir"),
                        ("if-directory", "if-dir"), ("ifplugin", "if-plugin")):
        table[alias] = table[name]
    return table


OPENERS: dict[str, Logic] = {
    "for": _for, "for-glob": _for_glob, "for-times": _for_times,
    "for-readline": _for_readline, **_conditions(),
}
# Openers that may go without an argument: an empty list loops no time, as in uWSGI
# (a condition or a glob with nothing to look at is a mistake: refused).
NO_ARGUMENT = frozenset({"if-reload", "if-not-reload", "for", "for-times"})
LOGIC_KEYS = frozenset(OPENERS) | ENDS


@dataclass(frozen=True)
class Block:
    """An open block: its opener, argument, and where it was opened."""

    key: str
    arg: str
    where: str

    def runs(self, ctx: LogicContext) -> Runs:
        """How the next key of the block is yielded (asked again for each key)."""
        runs = OPENERS[self.key](self.arg, ctx)
        if len(runs) > MAX_KEYS:
            raise OptionError(f"more items than the {MAX_KEYS} keys a config may have")
        return runs


def substitute(value: str | None, item: str | None) -> str | None:
    """``value`` with each ``%(_)`` replaced by ``item`` (unchanged without one)."""
    if value is None or item is None:
        return value
    return value.replace("%(_)", item)
