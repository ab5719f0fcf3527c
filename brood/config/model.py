"""The parsed configuration: typed option values, built once and passed down read-only.

Parts read options by their uWSGI name (``cfg["http-to"]``). Unset options read as their
declared default; repeatable ones as a list (empty when never given). ``ordered()`` keeps
the order options were given in, which matters where uWSGI's does (socket order decides
zerg fd order and shared-socket numbers). ``argv`` and ``ini_files`` remember where the
values came from, so the master can re-exec itself with the same sources on reload.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from brood.config import options as _table  # noqa: F401  (fills the registry)
from brood.config.option import Option, OptionError, lookup


class Config(Mapping[str, Any]):
    """Read-only option values by canonical name."""

    def __init__(
        self,
        given: Iterable[tuple[str, Any]] = (),
        *,
        argv: Iterable[str] = (),
        ini_files: Iterable[str] = (),
    ) -> None:
        #: the command line this config was loaded from (without the program name)
        self.argv: tuple[str, ...] = tuple(argv)
        #: absolute paths of every ini file read, includes too, in reading order
        self.ini_files: tuple[str, ...] = tuple(ini_files)
        #: lines the master logs at start: each ini key that is no option, ignored, and
        #: what the load went on without (``load_config``)
        self.ignored: tuple[str, ...] = ()
        #: (key, value) of the assembled config, as --show-config prints it
        self.assembled: tuple[tuple[str, str], ...] = ()
        #: the HTTP router routes to this instance's own workers (embedded mode: set by
        #: ``brood.routers.plan`` on the routers' config)
        self.embedded = False
        self._order: list[tuple[str, Any]] = []
        self._values: dict[str, Any] = {}
        for name, value in given:
            opt = _require(name)
            self._order.append((opt.name, value))
            if opt.multi:
                self._values.setdefault(opt.name, []).append(value)
            else:
                self._values[opt.name] = value

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Config:
        """Build from typed values (tests, embedded use). A list for a multi option
        means the option was given once per element."""
        given: list[tuple[str, Any]] = []
        for name, value in values.items():
            if _require(name).multi and isinstance(value, list | tuple):
                given.extend((name, v) for v in value)
            else:
                given.append((name, value))
        return cls(given)

    def __getitem__(self, name: str) -> Any:
        opt = _require(name)
        if opt.name in self._values:
            value = self._values[opt.name]
            return list(value) if opt.multi else value
        return [] if opt.multi else opt.default

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def is_set(self, name: str) -> bool:
        return _require(name).name in self._values

    def ordered(self) -> list[tuple[str, Any]]:
        """Every (name, value) in the order given; repeated options appear each time."""
        return list(self._order)

    def with_values(self, **overrides: Any) -> Config:
        """A copy with some options replaced (keyword names use ``_`` for ``-``)."""
        kept = [(n, v) for n, v in self._order if n.replace("-", "_") not in overrides]
        cfg = Config(kept, argv=self.argv, ini_files=self.ini_files)
        cfg.ignored = self.ignored  # (lost, the lines for a mistyped key went unsaid)
        cfg.assembled = self.assembled
        for key, value in overrides.items():
            opt = _require(key.replace("_", "-"))
            cfg._values.pop(opt.name, None)
            extra = value if opt.multi and isinstance(value, list | tuple) else [value]
            for v in extra:
                cfg._order.append((opt.name, v))
                if opt.multi:
                    cfg._values.setdefault(opt.name, []).append(v)
                else:
                    cfg._values[opt.name] = v
        return cfg


def _require(name: str) -> Option:
    opt = lookup(name)
    if opt is None:
        raise OptionError(f"unknown option --{name}")
    return opt


def refuse_unavailable(cfg: Config) -> None:
    """OptionError naming the first option given that brood parses but will not run with
    (``Option.refused``: a part not in this release, a uWSGI feature brood does not have).
    A flag given as false, or an empty value, asks for nothing and passes."""
    for name, value in cfg.ordered():
        opt = _require(name)
        if opt.refused and value not in (False, None, ""):
            raise OptionError(f"--{opt.name}: {opt.refused}")
