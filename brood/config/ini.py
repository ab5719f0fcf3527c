"""uWSGI-style ini files: the text of one file -> the raw lines of one ``[section]``.

Only the file syntax lives here, as uWSGI 2.0 reads it; config logic (``for``, ``if-*``),
includes and the expansion of ``$(VAR)``, ``@(...)`` and ``%(name)`` are the load's
(``brood.config.assemble``): uWSGI expands those once the whole config is assembled.

How it works: the magic variables are replaced in the whole text first, as uWSGI does
(so they work in keys and section names too): ``%d`` the file's directory with a
trailing slash, ``%p`` its real path, ``%s`` its name, ``%n`` the name up to its last
dot (all of it without one), ``%e`` what follows that dot, ``%c`` the directory's own
name, ``%0``..``%9`` the parts of the directory's path, ``%o`` the path as given, ``%i``
the inode, ``%j`` a hash of the path (uWSGI's djb33x, hex), ``%v`` the working
directory, ``%h`` the host name, ``%k`` the CPU count, ``%u``/``%U`` the user id/name,
``%g``/``%G`` the group's, ``%t``/``%T`` the start time in seconds/microseconds, ``%V``
brood's version, ``%b`` the interpreter running brood, ``%[`` an ESC, ``%%`` a ``%``.
The capitals ``%D %P %S %N %C %E %O %I %J`` are the same letters of the first config
file of the load. ``%x``/``%X`` (``path:section``, uWSGI 2.1's) are kept as brood's
addition. ``%(`` stays for the placeholders; any other ``%`` and the character after it
are dropped, a line break included (so a ``%`` ending a line joins the next one):
uWSGI 2.0's table is empty for every other character.

Then lines are cut at ``\\n``, each ends at its first NUL byte (uWSGI reads a line as a C
string: ``fo\\0o = 1`` is a bare ``fo``), and they are trimmed of spaces, tabs and
``\\r``. ``[name]`` starts a section (compared as written: ``[ uwsgi ]`` is another
one); blank lines and lines starting with ``#`` or ``;`` are comments. ``key = value``
gives one entry per line (repeated keys are repeated options); ``key`` alone gives value
None (a bare flag).
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import re
import select
import socket
import struct
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass

from brood import __version__
from brood.config.option import OptionError

DEFAULT_SECTION = "uwsgi"
# The largest config read: far more than any real one.
MAX_INI = 4 << 20
# A byte that was not UTF-8 (decoded with surrogateescape).
UNDECODED_RE = re.compile("[\udc80-\udcff]")
# What uWSGI trims around a line, a key and a value (not every Unicode space).
_TRIM = " \t\r"


@dataclass(frozen=True)
class IniEntry:
    """One ``key = value`` line of the section read, with where it was written."""

    key: str
    value: str | None  # None: the key was alone on its line
    path: str
    line: int

    @property
    def where(self) -> str:
        """``file:line``, or the variable's name for an ``UWSGI_*`` one (line 0)."""
        return f"{self.path}:{self.line}" if self.line else self.path


def split_spec(spec: str) -> tuple[str, str]:
    """``file.ini:section`` -> (path, section); a plain path reads ``[uwsgi]``;
    ``:section`` -> ("", section): the last file read (``brood.config.assemble``)."""
    path, colon, section = spec.rpartition(":")
    if colon and not path and section:
        return "", section
    if colon and path and section and "/" not in section and not os.path.isfile(spec):
        return path, section
    return spec, DEFAULT_SECTION


class TooLarge(ValueError):
    """A config file, ``@()`` source or ``for-readline`` list over ``MAX_INI`` bytes."""


# A FIFO, a pipe or a terminal that has not given its end by then will not: the start
# stops with a line instead of waiting (uWSGI waits for a FIFO's writer forever).
READ_TIMEOUT = 60.0


def read_bounded(path: str) -> bytes:
    """At most ``MAX_INI`` bytes of ``path`` (``/dev/zero`` is no config, ``<(...)`` is
    one), in ``READ_TIMEOUT``; OSError as opening or reading raises it (TimeoutError
    past the time), TooLarge past the bound."""
    # (O_NONBLOCK: opening a FIFO waits for a writer otherwise)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        return read_until_end(fd)
    finally:
        os.close(fd)


def read_until_end(fd: int, deadline: float | None = None) -> bytes:
    """What ``fd`` gives up to its end, at most ``MAX_INI`` bytes, by ``deadline``
    (``time.monotonic``; ``READ_TIMEOUT`` from now by default); TimeoutError, TooLarge,
    or OSError as reading raises it."""
    if deadline is None:
        deadline = time.monotonic() + READ_TIMEOUT
    chunks: list[bytes] = []
    size = 0
    while True:
        # (a FIFO no writer opened yet is not readable: select waits, read would say
        # "end" at once)
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise TimeoutError(errno.ETIMEDOUT, "no end of it within "
                               f"{READ_TIMEOUT:g} s (a FIFO or pipe nobody writes?)")
        try:
            chunk = os.read(fd, MAX_INI + 1 - size)
        except BlockingIOError:  # (another reader took it first)
            continue
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_INI:
            raise TooLarge(size)


def read_text(path: str) -> str:
    """The text of ``path``; OptionError (one line) when it is missing, unreadable or
    larger than ``MAX_INI``. Bytes that are not UTF-8 come back as surrogates: refused
    only where a line is read."""
    try:
        data = read_bounded(path)
    except FileNotFoundError:
        raise OptionError(f"--ini: no such file: {path}") from None
    except OSError as exc:
        raise OptionError(f"--ini: cannot read {path}: {exc.strerror or exc}") from None
    except TooLarge:
        raise OptionError(f"--ini: {path} is larger than {MAX_INI >> 20} MiB: "
                          "not a config") from None
    return data.decode("utf-8", "surrogateescape")


def read_ini_file(path: str, section: str = DEFAULT_SECTION,
                  first: Mapping[str, str] | None = None) -> list[IniEntry]:
    """The lines of ``[section]`` of ``path`` after magic; ``first``: the magic table
    of the load's first file (its capitals), None when this file is the first."""
    table = magic_table(path, section, first)
    return parse_ini(read_text(path), path, section, table)


def parse_ini(text: str, path: str, section: str,
              table: Mapping[str, str] | None = None) -> list[IniEntry]:
    """Parse ini ``text`` as if read from ``path``; OptionError when it has no
    ``[section]`` or a line of it has no key."""
    if table is None:
        table = magic_table(path, section, None)
    entries: list[IniEntry] = []
    current: str | None = None
    found = False
    for number, raw in magic_lines(text, table):
        line = raw.partition("\0")[0].strip(_TRIM)
        if not line or line[0] in "#;":
            continue
        if line[0] == "[":
            current = line[1:-1]
            found = found or current == section
            continue
        if current != section:
            continue
        key, eq, value = line.partition("=")
        key = key.rstrip(_TRIM)
        if not key:
            raise OptionError(f"{path}:{number}: line has no option name")
        entries.append(IniEntry(key, value.strip(_TRIM) if eq else None, path, number))
    if not found:
        # (uWSGI reads a byte order mark as part of the first line: it runs such a
        # file with nothing of it)
        bom = " (it starts with a byte order mark: save it without one)" if (
            text.startswith("\ufeff")) else ""
        raise OptionError(f"--ini: {path} has no [{section}] section{bom}")
    return entries


def magic_lines(text: str, table: Mapping[str, str]) -> list[tuple[int, str]]:
    """(line number, text) of each line after the magic variables, numbered as in the
    file: a line that a ``%`` joined to the next keeps the first one's number."""
    lines: list[tuple[int, str]] = []
    current: list[str] = []
    number = start = 1
    at = 0
    for special in _SPECIAL_RE.finditer(text):  # (plain text between them: sliced)
        if at < special.start():
            current.append(text[at:special.start()])
        at = special.end()
        found = special.group()
        if found == "\n":
            lines.append((start, "".join(current)))
            current = []
            number += 1
            start = number
            continue
        if found == "%\n":
            number += 1
        current.append(table.get(found[1], ""))
    if at < len(text):
        current.append(text[at:])
    if current:  # (a last line without its end; one of only magic that gave nothing too)
        lines.append((start, "".join(current)))
    return lines


# What magic_lines stops at: a line end, or a % and the character after it (a % ending
# the text is kept as written).
_SPECIAL_RE = re.compile(r"\n|%[\s\S]")


# When this instance started (%t, %T): the same in every file it reads.
_STARTED = time.time()
# The letters of the first file that its capitals repeat in every later one.
_FILE_LETTERS = "dpsnceoij"


def magic_table(path: str, section: str, first: Mapping[str, str] | None) -> dict[str, str]:
    """uWSGI's magic variables of one config file, by the character after ``%``."""
    full = _full_path(path)
    directory = full[: full.rfind("/") + 1]
    filename = full[len(directory):]
    table = {
        "o": path, "p": full, "s": filename, "d": directory,
        "c": os.path.basename(directory.rstrip("/")),
        "e": filename[filename.rfind(".") + 1:] if "." in filename else "",
        "n": filename[: filename.rfind(".")] if "." in filename else filename,
        "j": _path_hash(full), "x": f"{path}:{section}",
        "v": os.getcwd(), "V": __version__, "b": sys.executable,
        "h": socket.gethostname(), "k": str(os.cpu_count() or 1),
        "u": str(os.getuid()), "U": _user_name(), "g": str(os.getgid()), "G": _group_name(),
        "t": str(int(_STARTED)), "T": str(int(_STARTED * 1_000_000)),
        "[": "\033", "%": "%", "(": "%(",
    }
    try:
        table["i"] = str(os.stat(full).st_ino)
    except OSError:
        table["i"] = ""
    for index, part in enumerate([p for p in directory.split("/") if p][:10]):
        table[str(index)] = part  # %0..%9: the directory's path, a part each
    origin = first if first is not None else table
    for letter in _FILE_LETTERS:
        table[letter.upper()] = origin[letter]
    table["X"] = origin["x"]
    return table


def _full_path(path: str) -> str:
    """uWSGI's ``%p``: the real path, except for a symlink, kept as named (made
    absolute), so ``%d`` is where the link is."""
    if os.path.islink(path):
        return path if path.startswith("/") else f"{os.getcwd()}/{path}"
    return os.path.realpath(path)


def _path_hash(path: str) -> str:
    """uWSGI's ``%j``: the djb33x hash of the path, its four bytes in memory order (as
    x86 stores them) in hex; bytes past 0x7f count as C's signed chars."""
    value = 5381
    for byte in os.fsencode(path):
        value = ((value * 33) ^ (byte - 256 if byte > 127 else byte)) & 0xFFFFFFFF
    return struct.pack("<I", value).hex().upper()


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
