"""The one entry the CLI calls: command line (and the ini files it names) -> Config.

Ini files are applied where ``--ini`` (or a positional ``file.ini``) appears, as uWSGI
does: a later scalar overrides an earlier one, repeatable options accumulate in order.
``ini = other.ini`` inside a file includes it at that line; including a file that is
already being read is an error rather than a hang.

An ini key that is no brood option: a uWSGI feature brood does not have stops the start
(``brood.config.uwsgi_names``: running without ``route`` or ``https`` would serve what
the file meant to refuse), unless leaving it out changes nothing served (tuning and
reporting: ``thunder-lock``, ``memory-report``...); any other key is a placeholder, as
uWSGI reads it (``%(key)`` anywhere in the load). Those ignored get a line at start-up
(``Config.ignored``, with the closest option name: a typo shows there); ``--strict``
refuses them. The command line refuses every unknown option.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from brood.config import options as _table  # noqa: F401  (fills the registry)
from brood.config.argv import bare_value, parse_argv, unknown_option
from brood.config.ini import IniEntry, read_ini_file, recall, split_spec
from brood.config.model import Config
from brood.config.option import Option, OptionError, lookup
from brood.config.uwsgi_names import IGNORABLE, UWSGI_OPTIONS

_PLACEHOLDER_RE = re.compile(r"%\(([^()]*)\)")
_ENV_PREFIX = "UWSGI_"
# Variables uWSGI sets for itself or for its apps (reloads, the emperor's vassals):
# no options.
_ENV_NOT_OPTIONS = frozenset(("UWSGI_RELOADS", "UWSGI_ORIGINAL_PROC_NAME",
                              "UWSGI_VASSAL_CONFIG", "UWSGI_EMPEROR_FD",
                              "UWSGI_EMPEROR_FD_CONFIG", "UWSGI_EMPEROR_PROXY"))


def env_options(environ: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """(variable, option name, value) of each ``UWSGI_<NAME>`` variable, sorted: uWSGI
    reads them as options before the command line (``UWSGI_PROCESSES=4``, how Docker
    images are often configured); those uWSGI sets for itself are not options."""
    found = []
    for var in sorted(environ):
        if var.startswith(_ENV_PREFIX) and var not in _ENV_NOT_OPTIONS and var != _ENV_PREFIX:
            found.append((var, var[len(_ENV_PREFIX):].lower().replace("_", "-"),
                          environ[var]))
    return found


def load_config(argv: list[str], environ: Mapping[str, str] | None = None) -> Config:
    """Parse ``argv`` (without the program name), after the ``UWSGI_*`` variables of
    ``environ``; OptionError with one line on a mistake."""
    loader = _Loader(os.environ if environ is None else environ)
    for var, name, value in env_options(loader.environ):
        loader.take(name, value or None, f"${var}")
    for opt, value in parse_argv(argv):
        loader.give(opt, value)
    cfg = Config(loader.late_placeholders(), argv=argv, ini_files=loader.ini_files)
    # Keys some file took as placeholders (%(name), if-opt) are no mistake, wherever
    # they were given: judged once every file is read.
    unknown = [unknown_option(entry.key, entry.where) for entry in loader.unknown
               if entry.key not in loader.referenced]
    if cfg["strict"]:
        unknown += [unknown_option(name, "--set") for name in loader.set_names
                    if name not in loader.referenced]
    if unknown:
        if cfg["strict"]:
            raise unknown[0]
        cfg.ignored = tuple(f"{exc}: ignored (--strict refuses it)" for exc in unknown)
    return cfg


class _Loader:
    """Collects (name, typed value) in order, expanding ini files where they are named."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.given: list[tuple[str, Any]] = []
        self.ini_files: list[str] = []
        self.reading: list[tuple[str, str]] = []  # (real path, section) being read
        # Ini keys that are no option: uWSGI takes them as placeholders, so an ini file
        # written for it still runs; --strict refuses those no file refers to.
        self.unknown: list[IniEntry] = []
        # Values and placeholders shared by every file (and --set-placeholder/--set),
        # and the names some file refers to.
        self.placeholders: dict[str, str] = {}
        self.referenced: set[str] = set()
        self.set_names: list[str] = []  # --set NAME=VALUE of names that are no option

    def give(self, opt: Option, value: Any) -> None:
        if opt.name in ("set-placeholder", "set"):
            name, eq, text = str(value).partition("=")
            if not eq or not name.strip():
                raise OptionError(f"--{opt.name} {value}: expected NAME=VALUE")
            name, text = name.strip(), text.strip()
            target = lookup(name) if opt.name == "set" else None
            if target is not None:  # --set of an option sets it (uWSGI's -S)
                self.give(target, target.convert(text))
                return
            self.placeholders.setdefault(name, text)
            if opt.name == "set":  # (--strict: a name no file refers to is a typo)
                self.set_names.append(name)
        # Every option is a placeholder too, the command line's included (uWSGI's
        # %(procname-prefix)); the first value given is the one.
        self.placeholders.setdefault(opt.name, "" if value is True else str(value))
        self.given.append((opt.name, value))
        if opt.name == "ini":
            self.include(str(value))

    def late_placeholders(self) -> list[tuple[str, Any]]:
        """``given`` with what is left of ``%(name)`` filled in from every name known by
        the end (uWSGI expands placeholders once the whole config is read: a name may
        be given after the line that uses it)."""
        known = self.placeholders

        def fill(text: str) -> str:
            def one(match: re.Match[str]) -> str:
                name = match.group(1)
                found = recall(known, name)
                if found is None:
                    return match.group(0)  # log-format's %(method), say
                self.referenced.add(name)
                return found
            return _PLACEHOLDER_RE.sub(one, text)

        return [(name, fill(value) if isinstance(value, str) and "%(" in value else value)
                for name, value in self.given]

    def include(self, spec: str) -> None:
        path, section = split_spec(spec)
        real = os.path.realpath(path)
        if (real, section) in self.reading:
            chain = [p for p, _ in self.reading] + [real]
            raise OptionError(f"--ini: include loop: {' -> '.join(chain)}")
        self.ini_files.append(os.path.abspath(path))
        self.reading.append((real, section))
        try:
            # Each entry as its line is read: an included file's values and
            # placeholders are known to the lines after its ``ini =``, as in uWSGI.
            parsed = read_ini_file(path, section, self.environ, self.placeholders,
                                   on_entry=self._entry)
        finally:
            self.reading.pop()
        self.referenced |= parsed.referenced

    def _entry(self, entry: IniEntry) -> None:
        self.take(entry.key, entry.value, entry.where, entry)

    def take(self, key: str, text: str | None, where: str,
             entry: IniEntry | None = None) -> None:  # fmt: skip
        """One ``key = text`` of a file (``entry``) or a variable, ``where`` it was
        written; ``text`` None: the key alone."""
        opt = lookup(key)
        if opt is None:
            name = key.replace("_", "-")
            if name in UWSGI_OPTIONS and name not in IGNORABLE:
                # A uWSGI feature brood does not have (route, https, static-map...):
                # running without it would serve what the file meant to stop.
                raise OptionError(f"{where}: --{name} is a uWSGI option brood does "
                                  "not have (run this file with uWSGI, or remove it)")
            self.unknown.append(entry or IniEntry(key, text, where, 0))
            return
        try:
            value = bare_value(opt, key) if text is None else opt.convert(text)
        except OptionError as exc:
            raise OptionError(f"{where}: {exc}") from None
        self.give(opt, value)
