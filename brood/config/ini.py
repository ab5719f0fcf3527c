"""uWSGI-style ini files: read one section into raw (key, value) entries.

This module knows nothing about which options exist: it only applies the file-level
syntax, so any uWSGI ini parses here and unknown keys are judged later, by ``load``.

How it works: lines are read in order; only lines inside ``[section]`` (``uwsgi`` by
default; a section may appear several times) count. Blank lines and lines starting with
``#`` or ``;`` are comments. ``key = value`` gives one entry per occurrence (repeated keys
are repeated options); ``key`` alone gives an entry whose value is None (a bare flag).
Values are expanded once, left to right:

  ``%d`` directory of the file with a trailing slash, ``%p`` absolute path of the file,
  ``%s`` file name, ``%n`` file name without extension, ``%e`` its extension, ``%c`` name
  of the directory holding the file, ``%0``..``%9`` the parts of that directory's path,
  ``%o`` the path as given, ``%x`` it and the section, ``%i`` the file's inode, ``%v``
  the working directory, ``%h`` the host name, ``%k`` the CPU count, ``%u``/``%U`` the
  user id/name, ``%g``/``%G`` the group's, ``%t``/``%T`` the start time in seconds or
  microseconds, ``%V`` brood's version, ``%[`` an ESC (uWSGI's letters; the capitals
  ``%D %P %S %N %C %E %X %I %O`` are the same here), ``%%`` a literal ``%``, ``$(VAR)`` the environment (empty if unset),
  ``%(name)`` the first value given to ``name`` (an option or any key, in this file, one
  read or included before, a ``set-placeholder``/``set``, or the command line: uWSGI's
  placeholders; one given later is filled in by ``load`` once everything is read), or
  ``_``: the value an enclosing ``if-*`` matched. Anything else, such as log-format's
  ``%(method)``, is left as written.

Conditional blocks ``if-exists``/``if-not-exists``, ``if-file``/``if-not-file``,
``if-dir``/``if-not-dir``, ``if-env``/``if-not-env`` and ``if-opt``/``if-not-opt`` (an option
given earlier in this file, ``name`` or ``name=value``) run to the matching ``endif`` and
nest. Lines in a skipped block are not expanded.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from brood import __version__
from brood.config.option import OptionError

DEFAULT_SECTION = "uwsgi"
_SECTION = re.compile(r"^\[([^\]]*)\]$")
# %(name), %X (any single character) or $(VAR)
_MAGIC = re.compile(r"%\(([^()]*)\)|%(.)|\$\(([^()]*)\)", re.DOTALL)
_PLACEHOLDER_KEYS = ("set-placeholder", "set-ph")


@dataclass(frozen=True)
class IniEntry:
    """One ``key = value`` line that survived conditionals, with where it was written."""

    key: str
    value: str | None  # None: the key was alone on its line
    path: str
    line: int

    @property
    def where(self) -> str:
        """``file:line``, or the variable's name for an ``UWSGI_*`` one (line 0)."""
        return f"{self.path}:{self.line}" if self.line else self.path


@dataclass
class IniFile:
    """What one section of one file gives: entries in order, and the names that other
    values referred to as ``%(name)`` (custom keys used that way are placeholders, not typos)."""

    path: str
    section: str
    entries: list[IniEntry] = field(default_factory=list)
    referenced: set[str] = field(default_factory=set)


def split_spec(spec: str) -> tuple[str, str]:
    """``file.ini:section`` -> (path, section); a plain path reads ``[uwsgi]``."""
    path, colon, section = spec.rpartition(":")
    if colon and path and section and "/" not in section and not os.path.isfile(spec):
        return path, section
    return spec, DEFAULT_SECTION


def read_ini(
    path: str, section: str = DEFAULT_SECTION, environ: Mapping[str, str] | None = None
) -> list[tuple[str, str]]:
    """Raw (key, value) pairs of ``[section]`` after magic and conditionals.

    A key alone on its line reads as value ``""`` here; ``read_ini_file`` keeps the
    difference for callers that need it.
    """
    parsed = read_ini_file(path, section, environ)
    return [(e.key, e.value if e.value is not None else "") for e in parsed.entries]


# The largest config read: far more than any real one.
MAX_INI = 4 << 20
# A byte that was not UTF-8 (decoded with surrogateescape).
_UNDECODED_RE = re.compile("[\udc80-\udcff]")


def read_ini_file(
    path: str, section: str = DEFAULT_SECTION, environ: Mapping[str, str] | None = None,
    seen: dict[str, str] | None = None,
    on_entry: Callable[[IniEntry], None] | None = None,
) -> IniFile:
    """Read and parse ``path``; OptionError (one line) when it is missing, unreadable or
    larger than ``MAX_INI`` (``/dev/zero`` is no config, ``<(...)`` is one). Bytes that
    are not UTF-8 are refused where they would be read: in a comment, another section
    or a skipped block they do no harm (as uWSGI reads them). ``seen``: the values and
    placeholders known so far, shared by every file of one load (uWSGI's placeholders
    are the instance's, not a file's); this file's go into it. ``on_entry``: called
    with each entry as its line is read."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_INI + 1)
    except FileNotFoundError:
        raise OptionError(f"--ini: no such file: {path}")
    except OSError as exc:
        raise OptionError(f"--ini: cannot read {path}: {exc.strerror or exc}")
    if len(data) > MAX_INI:
        raise OptionError(f"--ini: {path} is larger than {MAX_INI >> 20} MiB: not a config")
    text = data.decode("utf-8", "surrogateescape")  # (lines read are checked: _Parser)
    return parse_ini(text, path, section, os.environ if environ is None else environ, seen,
                     on_entry)


def parse_ini(text: str, path: str, section: str, environ: Mapping[str, str],
              seen: dict[str, str] | None = None,
              on_entry: Callable[[IniEntry], None] | None = None) -> IniFile:
    """Parse ini ``text`` as if read from ``path`` (which the magic variables describe)."""
    parser = _Parser(path, section, environ, {} if seen is None else seen, on_entry)
    for number, raw in enumerate(text.splitlines(), 1):
        parser.feed(raw, number)
    return parser.finish()


def _if_exists(arg: str, env: Mapping[str, str], seen: Mapping[str, str]) -> bool:
    return os.path.exists(arg)


def _if_file(arg: str, env: Mapping[str, str], seen: Mapping[str, str]) -> bool:
    return os.path.isfile(arg)


def _if_dir(arg: str, env: Mapping[str, str], seen: Mapping[str, str]) -> bool:
    return os.path.isdir(arg)


def _if_env(arg: str, env: Mapping[str, str], seen: Mapping[str, str]) -> bool:
    return arg in env


def _if_opt(arg: str, env: Mapping[str, str], seen: Mapping[str, str]) -> bool:
    name, eq, want = arg.partition("=")
    value = recall(seen, name.strip())
    return value is not None and (not eq or value == want.strip())


_Check = Callable[[str, Mapping[str, str], Mapping[str, str]], bool]
_CONDITIONS: dict[str, _Check] = {
    "exists": _if_exists,
    "file": _if_file,
    "dir": _if_dir,
    "env": _if_env,
    "opt": _if_opt,
}


def _condition(key: str) -> tuple[_Check, bool] | None:
    """(check, wanted result) for ``if-X`` / ``if-not-X`` keys, else None."""
    if not key.startswith("if-"):
        return None
    rest = key[3:]
    negate = rest.startswith("not-")
    check = _CONDITIONS.get(rest[4:] if negate else rest)
    return (check, not negate) if check else None


def recall(seen: Mapping[str, str], name: str) -> str | None:
    """The value of placeholder ``name`` (``_`` and ``-`` alike), None when unknown."""
    if name in seen:
        return seen[name]
    return seen.get(name.replace("_", "-"))


@dataclass
class _Block:
    line: int
    was_active: bool
    context: str | None


# When this instance started (%t, %T): the same in every file it reads.
_STARTED = time.time()


def _magic(path: str, absolute: str, section: str) -> dict[str, str]:
    """uWSGI's magic variables of one config file, by letter (``%X`` in a value)."""
    directory = os.path.dirname(absolute)
    filename = os.path.basename(absolute)
    name, ext = os.path.splitext(filename)
    magic = {
        "d": directory.rstrip("/") + "/", "p": absolute, "s": filename, "n": name,
        "c": os.path.basename(directory), "e": ext.lstrip("."), "o": path,
        "x": f"{path}:{section}", "v": os.getcwd(), "V": __version__,
        "h": socket.gethostname(), "k": str(os.cpu_count() or 1),
        "u": str(os.getuid()), "U": _user_name(), "g": str(os.getgid()), "G": _group_name(),
        "t": str(int(_STARTED)), "T": str(int(_STARTED * 1_000_000)),
        "[": "\033", "%": "%",
    }
    with contextlib.suppress(OSError):
        magic["i"] = str(os.stat(absolute).st_ino)
    for index, part in enumerate([p for p in directory.split("/") if p][:10]):
        magic[str(index)] = part  # %0..%9: the directory's path, a part each
    # The capitals name the first file of a chain of templates; brood has no templates.
    for letter in "dpsncexi":
        if letter in magic:
            magic[letter.upper()] = magic[letter]
    magic["O"] = path
    return magic


def _user_name() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def _group_name() -> str:
    try:
        return grp.getgrgid(os.getgid()).gr_name
    except KeyError:
        return str(os.getgid())


class _Parser:
    """Line-by-line state: current section, open if-blocks, values seen so far."""

    def __init__(self, path: str, section: str, environ: Mapping[str, str],
                 seen: dict[str, str], on_entry: Callable[[IniEntry], None] | None) -> None:
        self.result = IniFile(path, section)
        self.on_entry = on_entry
        self.environ = environ
        absolute = os.path.abspath(path)
        self.magic = _magic(path, absolute, section)
        self.in_section = False
        self.section_found = False
        self.active = True
        self.blocks: list[_Block] = []
        self.context: str | None = None  # %(_)
        self.seen = seen

    def feed(self, raw: str, number: int) -> None:
        line = raw.strip()
        if not line or line[0] in "#;":
            return
        header = _SECTION.match(line)
        if header:
            self.in_section = header.group(1).strip() == self.result.section
            self.section_found = self.section_found or self.in_section
            return
        if not self.in_section:
            return
        key, eq, value = line.partition("=")
        key = key.strip()
        if not key:
            raise OptionError(f"{self.result.path}:{number}: line has no option name")
        if key == "endif":
            self._endif(number)
            return
        cond = _condition(key)
        if cond is not None:
            self._open(key, value.strip() if eq else None, cond, number)
            return
        if not self.active:
            return
        if _UNDECODED_RE.search(line):  # a line read, not one of another section
            raise OptionError(f"{self.result.path}:{number}: not UTF-8 text")
        expanded = self.expand(value.strip()) if eq else None
        if key in _PLACEHOLDER_KEYS:
            self._placeholder(key, expanded, number)
            return
        if key == "set":  # a placeholder for what follows here (and an option, if one)
            self._placeholder(key, expanded, number)
        # The first value of a name is its %(name), as uWSGI looks placeholders up (a
        # bare key reads as empty, as there).
        self.seen.setdefault(key, "" if expanded is None else expanded)
        entry = IniEntry(key, expanded, self.result.path, number)
        self.result.entries.append(entry)
        if self.on_entry is not None:
            self.on_entry(entry)

    def finish(self) -> IniFile:
        if self.blocks:
            line = self.blocks[-1].line
            raise OptionError(f"{self.result.path}:{line}: if-block is never closed by endif")
        if not self.section_found:
            raise OptionError(f"--ini: {self.result.path} has no [{self.result.section}] section")
        return self.result

    def expand(self, value: str) -> str:
        """Apply the magic variables of this file to one value."""
        if "%" not in value and "$(" not in value:
            return value

        def one(match: re.Match[str]) -> str:
            name, letter, env = match.groups()
            if env is not None:
                return self.environ.get(env, "")
            if letter is not None:
                return self.magic.get(letter, match.group(0))
            if name == "_" and self.context is not None:
                return self.context
            known = recall(self.seen, name)
            if known is None:
                return match.group(0)
            self.result.referenced.add(name)
            return known

        return _MAGIC.sub(one, value)

    def _open(self, key: str, arg: str | None, cond: tuple[_Check, bool], number: int) -> None:
        self.blocks.append(_Block(number, self.active, self.context))
        if not self.active:
            return
        if not arg:
            raise OptionError(f"{self.result.path}:{number}: {key} needs a value")
        target = self.expand(arg)
        check, wanted = cond
        if check is _if_opt:  # a key read only by if-opt is a placeholder too
            self.result.referenced.add(target.partition("=")[0].strip())
        self.active = check(target, self.environ, self.seen) == wanted
        if self.active and wanted:
            self.context = self.environ.get(target, "") if key == "if-env" else target

    def _endif(self, number: int) -> None:
        if not self.blocks:
            raise OptionError(f"{self.result.path}:{number}: endif without a matching if-*")
        block = self.blocks.pop()
        self.active = block.was_active
        self.context = block.context

    def _placeholder(self, key: str, value: str | None, number: int) -> None:
        name, eq, text = (value or "").partition("=")
        if not eq or not name.strip():
            raise OptionError(f"{self.result.path}:{number}: {key} wants NAME=VALUE")
        self.seen.setdefault(name.strip(), text.strip())
