"""The one entry the CLI calls: command line (and the ini files it names) -> Config.

The config is assembled as uWSGI assembles its own (``brood.config.assemble``): the
``UWSGI_*`` variables, then the command line, ini files read where ``--ini`` (or
``ini =``/``include =`` in a file) names them, positional ``file.ini`` arguments after
every option (as getopt gives them to uWSGI), config logic
run as keys arrive, values expanded once everything is in, ``inherit`` templates last.
Then each key becomes a typed option: a later scalar overrides an earlier one,
repeatable options accumulate in order.

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
from collections.abc import Mapping

from brood.config import options as _table  # noqa: F401  (fills the registry)
from brood.config.argv import bare_value, read_argv, unknown_option
from brood.config.assemble import Assembler, Entry
from brood.config.model import Config
from brood.config.option import OptionError, lookup
from brood.config.uwsgi_names import IGNORABLE, UWSGI_OPTIONS

_ENV_PREFIX = "UWSGI_"
# Variables uWSGI sets for itself or for its apps (reloads, the emperor's vassals):
# no options.
_ENV_NOT_OPTIONS = frozenset(("UWSGI_RELOADS", "UWSGI_ORIGINAL_PROC_NAME",
                              "UWSGI_VASSAL_CONFIG", "UWSGI_EMPEROR_FD",
                              "UWSGI_EMPEROR_FD_CONFIG", "UWSGI_EMPEROR_PROXY"))


def env_options(environ: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """(variable, option name, value) of each ``UWSGI_<NAME>`` variable, in the
    environment's order: uWSGI reads them so, as options before the command line
    (``UWSGI_PROCESSES=4``, how Docker images are often configured); those uWSGI sets
    for itself are not options."""
    found = []
    for var in environ:
        if var.startswith(_ENV_PREFIX) and var not in _ENV_NOT_OPTIONS and var != _ENV_PREFIX:
            found.append((var, var[len(_ENV_PREFIX):].lower().replace("_", "-"),
                          environ[var]))
    return found


def load_config(argv: list[str], environ: Mapping[str, str] | None = None) -> Config:
    """Parse ``argv`` (without the program name), after the ``UWSGI_*`` variables of
    ``environ``; OptionError with one line on a mistake."""
    asm = assemble(argv, os.environ if environ is None else environ)
    given: list[tuple[str, object]] = []
    unknown: list[Entry] = []
    for entry in asm.entries:
        if entry.option:
            _convert(entry, given, unknown)
    cfg = Config(given, argv=argv, ini_files=asm.ini_files)
    cfg.assembled = tuple((e.key, e.shown_value()) for e in asm.entries if e.shown)
    # Keys some value took as placeholders (%(name), if-opt) are no mistake, wherever
    # they were given: judged once everything is read.
    strict = bool(cfg["strict"])
    # A set key is a placeholder, unless a space kept around its "=" made it so.
    judged = dict.fromkeys((e.key, e.where) for e in unknown  # (a loop's key: once)
                           if e.key not in asm.referenced
                           and (strict or not e.from_set or lookup(e.key.strip())))
    lines = [unknown_option(key, where) for key, where in judged]
    if lines and strict:
        raise lines[0]
    cfg.ignored = (*(f"{exc}: ignored (--strict refuses it)" for exc in lines), *asm.notes)
    return cfg


def assemble(argv: list[str], environ: Mapping[str, str]) -> Assembler:
    """Every source read in uWSGI's order and expanded (``Assembler.finish`` done)."""
    asm = Assembler(environ)
    for var, name, value in env_options(environ):
        asm.add(name, value, f"${var}", "env")
    asm.end_of_source()
    given = read_argv(argv)
    for item in given:
        if item.shown:
            asm.add(item.key, item.value, "", "argv")
    # Positional files come after every option, as getopt hands them to uWSGI (so
    # `uwsgi app.ini -p 8` runs the file's processes when it sets some); no line of
    # their own in --show-config.
    for item in given:
        if not item.shown:
            asm.add(item.key, item.value, "", "argv", shown=False)
    asm.end_of_source()
    asm.finish()
    return asm


def _convert(entry: Entry, given: list[tuple[str, object]], unknown: list[Entry]) -> None:
    """One assembled key -> a typed option in ``given``, or an unknown key."""
    opt = lookup(entry.key)
    if opt is None:
        name = entry.key.replace("_", "-")
        if name in UWSGI_OPTIONS and name not in IGNORABLE:
            # A uWSGI feature brood does not have (route, https, static-map...):
            # running without it would serve what the file meant to stop.
            raise OptionError(f"{_at(entry)}--{name} is a uWSGI option brood does "
                              "not have (run this file with uWSGI, or remove it)")
        unknown.append(entry)
        return
    # An empty UWSGI_NAME= is the option given bare, as uWSGI reads it.
    text = None if entry.origin == "env" and entry.value == "" else entry.value
    try:
        value = bare_value(opt, entry.key) if text is None else opt.convert(text)
    except OptionError as exc:
        hint = ""
        if not entry.expand and text and any(f"{s}(" in text for s in "$@%"):
            hint = (f" (uWSGI reads --{opt.name} as written, at once: no $(VAR), @() "
                    "or %(name) in it)")
        raise OptionError(f"{_at(entry)}{exc}{hint}") from None
    given.append((opt.name, value))


def _at(entry: Entry) -> str:
    return f"{entry.where}: " if entry.where else ""
