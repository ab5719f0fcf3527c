"""Process titles (``--auto-procname``, ``--procname*``), as uWSGI 2.0 sets them.

Without any of these options brood leaves titles alone (``ps`` shows the command line),
as uWSGI does. With any of them every process gets a title, built as uWSGI builds it
(observed on uWSGI 2.0.21):

* the name: ``--procname-master`` for the master; ``--procname`` for every process (the
  master too when it has no name of its own); otherwise uWSGI's automatic names
  ``uWSGI master``, ``uWSGI worker N``, ``uWSGI http N``, ``uWSGI fastrouter N``...;
* ``--procname-prefix`` before it (``--procname-prefix-spaced`` adds a space; when both
  are given the later one counts, they set the same thing), ``--procname-append`` after.

``Titles`` is the pure part. ``title_setter`` returns setproctitle's function: it
rewrites the process's argument area, which is what ``ps`` and /proc/PID/cmdline show,
and the kernel's 15-byte short name (/proc/PID/comm) too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from brood.config.model import Config
from brood.config.option import OptionError

TITLE_OPTIONS = ("auto-procname", "procname", "procname-master", "procname-prefix",
                 "procname-prefix-spaced", "procname-append")


@dataclass(frozen=True)
class Titles:
    """What every process of an instance is called."""

    prefix: str = ""
    append: str = ""
    name: str | None = None
    master_name: str | None = None

    @classmethod
    def from_config(cls, cfg: Config) -> Titles | None:
        """None when no option asks for titles (they are left alone then)."""
        if not any(cfg.is_set(n) and cfg[n] is not False for n in TITLE_OPTIONS):
            return None
        prefix = ""
        for name, value in cfg.ordered():
            if name == "procname-prefix":
                prefix = str(value)
            elif name == "procname-prefix-spaced":
                prefix = f"{value} "
        return cls(prefix=prefix, append=str(cfg["procname-append"] or ""),
                   name=cfg["procname"], master_name=cfg["procname-master"])

    def master(self) -> str:
        return f"{self.prefix}{self.master_name or self.name or 'uWSGI master'}{self.append}"

    def child(self, label: str, index: int) -> str:
        """``label`` is the child kind's ("uWSGI worker", "uWSGI http"); index from 1."""
        return f"{self.prefix}{self.name or f'{label} {index}'}{self.append}"


def title_setter() -> Callable[[str], None]:
    """setproctitle's setter; imported in the master, so children only call it."""
    try:
        from setproctitle import setproctitle
    except ImportError:
        raise OptionError("process titles (--auto-procname, --procname*) need the "
                          "setproctitle package: pip install setproctitle") from None
    return setproctitle
