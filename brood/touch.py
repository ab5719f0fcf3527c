"""Touch files (--touch-reload, --touch-logrotate, --touch-logreopen): the master
notices, once per cycle, that a file's mtime changed, as uWSGI does (a file that
appears, or goes away, counts as touched too)."""

from __future__ import annotations

import os
from collections.abc import Iterable


def mtime(path: str) -> float | None:
    try:
        return os.stat(path).st_mtime_ns / 1e9
    except OSError:
        return None


class TouchWatch:
    """The mtimes of some files as last seen."""

    def __init__(self, paths: Iterable[str]) -> None:
        self.seen: dict[str, float | None] = {path: mtime(path) for path in paths}

    def touched(self) -> str | None:
        """The first file touched since the last call (then seen as it is now)."""
        for path, before in self.seen.items():
            now = mtime(path)
            if now != before:
                self.seen[path] = now
                return path
        return None
