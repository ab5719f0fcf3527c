"""Whole lines out of each process's output, and where each line goes (pure).

Every process writes into a pipe of its own (``brood.logs.master``), so what one
process writes reaches the log master in order and unmixed, whatever its size and
however many writes it took: ``LineBuffer`` cuts it into whole lines and keeps the
unfinished tail for the next read. Lines are never cut or joined with another
process's, which a shared pipe only promises for writes up to PIPE_BUF (4096 bytes).

``Routing`` decides, per line, which loggers get it, as uWSGI's log master does: a
line matching a --log-drain goes nowhere; with --log-filter only lines matching one of
them go anywhere; a line matching --log-route expressions goes to those named loggers
only; any other line goes to every logger without a name, or, when there is none, to
the plain log (--logto, --daemonize, or the terminal). Request lines
(``Routing.for_requests``) skip drains and filters and follow --log-req-route, then
the --req-logger ones, as there. Expressions are matched on the line's bytes, without
its newline.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

# A line longer than this is passed on in pieces of this size (memory stays bounded
# even for a process that writes megabytes without a newline).
MAX_LINE = 1 << 20
# A tail without its newline is passed on as a line of its own after this many
# seconds (a prompt or a progress dot printed without one is not held forever).
STALE_TAIL = 2.0


class LineBuffer:
    """One source's bytes, cut into whole lines."""

    __slots__ = ("tail", "since")

    def __init__(self) -> None:
        self.tail = b""
        self.since = 0.0  # when the tail began waiting for its newline

    def feed(self, data: bytes, now: float) -> bytes:
        """The whole lines that ``data`` completes (each ending with a newline), in one
        bytes; the unfinished rest waits for the next call."""
        if self.tail:
            data = self.tail + data
        cut = data.rfind(b"\n") + 1
        whole, tail = data[:cut], data[cut:]
        if len(tail) >= MAX_LINE:
            whole, tail = whole + tail + b"\n", b""
        if tail and not self.tail:
            self.since = now
        self.tail = tail
        return whole

    def flush(self) -> bytes:
        """The tail as a line of its own (end of the source, or it went stale)."""
        tail, self.tail = self.tail, b""
        return tail + b"\n" if tail else b""

    def stale(self, now: float) -> bool:
        return bool(self.tail) and now - self.since >= STALE_TAIL


def split_lines(chunk: bytes) -> list[bytes]:
    """``chunk`` (whole lines) as a list of lines, each with its newline. Only a newline
    ends a line (``bytes.splitlines`` also cuts at a carriage return, and a line with
    one inside would go to its loggers in two pieces)."""
    lines = [line + b"\n" for line in chunk.split(b"\n")]
    lines[-1] = lines[-1][:-1]  # (what follows the last newline: b"" for whole lines)
    return lines if lines[-1] else lines[:-1]


class Routing:
    """Where lines go, as indexes into the log master's list of loggers (``RAW``: the
    plain log). Built once from the plan's expressions."""

    RAW = -1

    def __init__(self, defaults: Sequence[int], routes: Iterable[tuple[int, str]] = (),
                 drains: Iterable[str] = (), filters: Iterable[str] = ()) -> None:
        self.defaults = tuple(defaults) or (self.RAW,)
        self.routes = [(target, re.compile(expr.encode())) for target, expr in routes]
        self.drains = [re.compile(expr.encode()) for expr in drains]
        self.filters = [re.compile(expr.encode()) for expr in filters]
        # Every line goes to ``defaults``: the log master writes whole reads at once.
        self.plain = not (self.routes or self.drains or self.filters)

    @classmethod
    def for_requests(cls, defaults: Sequence[int],
                     routes: Iterable[tuple[int, str]] = ()) -> Routing:
        return cls(defaults, routes)

    def targets(self, line: bytes) -> tuple[int, ...]:
        """The loggers ``line`` goes to (empty: nowhere)."""
        if self.plain:
            return self.defaults
        text = line.rstrip(b"\n")
        for expr in self.drains:
            if expr.search(text):
                return ()
        if self.filters and not any(expr.search(text) for expr in self.filters):
            return ()
        routed = tuple(dict.fromkeys(t for t, expr in self.routes if expr.search(text)))
        return routed or self.defaults
