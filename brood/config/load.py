"""The one entry the CLI calls: command line (and the ini files it names) -> Config.

Ini files are applied where ``--ini`` (or a positional ``file.ini``) appears, as uWSGI
does: a later scalar overrides an earlier one, repeatable options accumulate in order.
``ini = other.ini`` inside a file includes it at that line; including a file that is
already being read is an error rather than a hang.

Unlike uWSGI, an unknown key in an ini file is an error (typos in ini files are the
hardest to see), except a custom key that the same file uses as ``%(key)``: that is a
placeholder, uWSGI's documented way to build values.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from brood.config import options as _table  # noqa: F401  (fills the registry)
from brood.config.argv import bare_value, parse_argv, unknown_option
from brood.config.ini import IniEntry, read_ini_file, split_spec
from brood.config.model import Config
from brood.config.option import Option, OptionError, lookup


def load_config(argv: list[str], environ: Mapping[str, str] | None = None) -> Config:
    """Parse ``argv`` (without the program name); OptionError with one line on a mistake."""
    loader = _Loader(os.environ if environ is None else environ)
    for opt, value in parse_argv(argv):
        loader.give(opt, value)
    cfg = Config(loader.given, argv=argv, ini_files=loader.ini_files)
    if loader.unknown:
        if cfg["strict"]:
            raise loader.unknown[0]
        cfg.ignored = tuple(f"{exc}: ignored (--strict refuses it)" for exc in loader.unknown)
    return cfg


class _Loader:
    """Collects (name, typed value) in order, expanding ini files where they are named."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.given: list[tuple[str, Any]] = []
        self.ini_files: list[str] = []
        self.reading: list[tuple[str, str]] = []  # (real path, section) being read
        # Ini keys that are no option (nor a placeholder): uWSGI takes them as
        # placeholders, so an ini file written for it still runs; --strict refuses them.
        self.unknown: list[OptionError] = []

    def give(self, opt: Option, value: Any) -> None:
        self.given.append((opt.name, value))
        if opt.name == "ini":
            self.include(str(value))

    def include(self, spec: str) -> None:
        path, section = split_spec(spec)
        real = os.path.realpath(path)
        if (real, section) in self.reading:
            chain = [p for p, _ in self.reading] + [real]
            raise OptionError(f"--ini: include loop: {' -> '.join(chain)}")
        parsed = read_ini_file(path, section, self.environ)
        self.ini_files.append(os.path.abspath(path))
        self.reading.append((real, section))
        try:
            for entry in parsed.entries:
                self._entry(entry, parsed.referenced)
        finally:
            self.reading.pop()

    def _entry(self, entry: IniEntry, placeholders: set[str]) -> None:
        opt = lookup(entry.key)
        if opt is None:
            if entry.key not in placeholders:
                self.unknown.append(unknown_option(entry.key, entry.where))
            return
        try:
            bare = entry.value is None
            value = bare_value(opt, entry.key) if bare else opt.convert(entry.value)
        except OptionError as exc:
            raise OptionError(f"{entry.where}: {exc}") from None
        self.give(opt, value)
