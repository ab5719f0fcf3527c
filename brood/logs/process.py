"""The log master process: reads every process's output pipe, writes whole lines to the
loggers, rotates and reopens files.

How it works
------------
One ``selectors`` loop over the control socket and the sources: the read end of each
process's pipe (``Source``: the master's own, and one, or two with --req-logger, per
child). A readable source is read in chunks of ``READ_SIZE``; its ``LineBuffer`` keeps
what is not a whole line yet; the whole lines go through ``Routing`` to the sinks (one
write per sink for a plain setup, whatever the number of lines). With log encoders,
each line is encoded for each logger it goes to (``brood.logs.encoders``: a logger's
chain depends on its name) and a logger gets its lines as messages (one datagram each).
A source at end of file (its process, and every process that inherited the pipe, has
exited) gives its tail as a last line and is closed.

The master speaks over the control socket (``brood.logs.control``): ``add`` brings the
read ends of a new child's pipes (SCM_RIGHTS), ``rotate`` and ``reopen`` act on every
file sink, ``reload`` (the master re-executed) opens again, silently, the file loggers
whose path names another file now (and --logto's with --log-reopen), as a new uWSGI
master opens its loggers, ``stop`` reads what is there to read and exits, ``retire``
(the next master started a log master of its own) reads on until every source has
ended. The control
socket at end of file without either means the master died: read what is there, exit.

The loop never waits on anything but the selector and the sinks' writes, so it keeps
reading while the master re-executes, loads the app or stops its children: the pipes
fill only if a sink itself blocks (a file on a stuck disk). It ignores the stop
signals a terminal sends the whole process group: the master tells it when to go.
Every ``REPORT_EVERY`` seconds, lines a sink lost (a full disk, an absent syslog
daemon) are reported to the plain log with the count and the reason.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from brood.log import stamp
from brood.logs import control
from brood.logs.encoders import Chain, EncoderSpec, chain_for
from brood.logs.lines import LineBuffer, Routing, split_lines
from brood.logs.sinks import DatagramSink, FdSink, FileSink, Sink, open_sink
from brood.logs.spec import LoggerSpec, LogPlan
from brood.signals import release_stops

READ_SIZE = 65536
READS_PER_WAKE = 16  # per source and wakeup: one chatty process cannot starve the rest
REPORT_EVERY = 10.0
TICK = 1.0


@dataclass
class Source:
    """One pipe's read end: whose output it carries, and its unfinished line."""

    fd: int
    name: str
    requests: bool = False  # the request-line channel (--req-logger)
    lines: LineBuffer = field(default_factory=LineBuffer)


class LogProcess:
    """The loop and its state. ``raw_fd`` is the plain log (--logto's file, or what fd 2
    was); ``plan.logfile`` names it when it is a file, so it can rotate and reopen."""

    def __init__(self, plan: LogPlan, raw_fd: int, ctl: socket.socket,
                 sources: list[Source], owner: tuple[int, int] | None = None) -> None:
        self.plan = plan
        self.ctl = ctl
        self.selector = selectors.DefaultSelector()
        self.sources: dict[int, Source] = {}
        self.stopping = False
        self.retired = False
        self.next_report = time.time() + REPORT_EVERY
        self.reported: dict[int, int] = {}
        if plan.logfile:
            self.raw: Sink = FileSink(plan.logfile, fd=raw_fd, maxsize=plan.maxsize,
                                      backupname=plan.backupname, mode=plan.chmod,
                                      owner=owner, label=plan.logfile)
        else:  # the terminal, a pipe, or --logto HOST:PORT's UDP socket
            self.raw = DatagramSink.connected(raw_fd, "the log socket") or \
                FdSink(raw_fd, "stderr")
        self.sinks: list[Sink] = []
        names: dict[str, int] = {}
        for spec in plan.loggers:
            if spec.name:  # (uWSGI routes to the first of a name)
                names.setdefault(spec.name, len(self.sinks))
            self.sinks.append(open_sink(spec, self.raw, plan.chmod, owner))
        main_defaults = [i for i, s in enumerate(plan.loggers) if s.name is None]
        first_req = len(self.sinks)
        for spec in plan.req_loggers:
            self.sinks.append(open_sink(spec, self.raw, plan.chmod, owner))
        req_defaults = [first_req + i for i, s in enumerate(plan.req_loggers)
                        if s.name is None]
        self.main = Routing(main_defaults, [(names[n], e) for n, e in plan.routes],
                            plan.drains, plan.filters)
        self.requests = Routing.for_requests(req_defaults,
                                             [(names[n], e) for n, e in plan.req_routes])
        # Each logger's encoder chain, by target (empty: no encoder on that channel).
        self.chains = _chains(plan.encoders, plan.loggers, 0)
        self.req_chains = {**_chains(plan.req_encoders, plan.loggers, 0),
                           **_chains(plan.req_encoders, plan.req_loggers, first_req)}
        self.selector.register(ctl, selectors.EVENT_READ, None)
        for source in sources:
            self.add(source)

    # -- sources -----------------------------------------------------------------------

    def add(self, source: Source) -> None:
        os.set_blocking(source.fd, False)
        self.sources[source.fd] = source
        self.selector.register(source.fd, selectors.EVENT_READ, source)

    def _read(self, source: Source, now: float, limit: int = READS_PER_WAKE,
              to_the_end: bool = False) -> None:
        """Up to ``limit`` reads (``to_the_end``: until the pipe is empty, not just
        until a short read)."""
        for _ in range(limit):
            try:
                data = os.read(source.fd, READ_SIZE)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._end(source, now)
                return
            whole = source.lines.feed(data, now)
            if whole:
                self.dispatch(whole, source.requests, now)
            if len(data) < READ_SIZE and not to_the_end:
                return

    def _end(self, source: Source, now: float) -> None:
        tail = source.lines.flush()
        if tail:
            self.dispatch(tail, source.requests, now)
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(source.fd)
        self.sources.pop(source.fd, None)
        with contextlib.suppress(OSError):
            os.close(source.fd)

    # -- lines -------------------------------------------------------------------------

    def sink(self, target: int) -> Sink:
        return self.raw if target == Routing.RAW else self.sinks[target]

    def dispatch(self, chunk: bytes, requests: bool, now: float) -> None:
        """Whole lines to their loggers: at once when every line goes to the same ones,
        else gathered per logger (each still gets its lines in order, in one write)."""
        routing = self.requests if requests else self.main
        chains = self.req_chains if requests else self.chains
        if chains:
            self._encoded(chunk, routing, chains, now)
            return
        if routing.plain:
            for target in routing.defaults:
                self.sink(target).write(chunk, now)
            return
        batches: dict[int, list[bytes]] = {}
        for line in split_lines(chunk):
            for target in routing.targets(line):
                batches.setdefault(target, []).append(line)
        for target, lines in batches.items():
            self.sink(target).write(b"".join(lines), now)

    def _encoded(self, chunk: bytes, routing: Routing, chains: dict[int, Chain],
                 now: float) -> None:
        """Each line through the chain of each logger it goes to, then each logger's
        messages at once (an empty one is not written)."""
        batches: dict[int, list[bytes]] = {}
        for line in split_lines(chunk):
            for target in routing.targets(line):
                chain = chains.get(target)
                message = chain.encode(line, now) if chain is not None else line
                if message:
                    batches.setdefault(target, []).append(message)
        for target, messages in batches.items():
            self.sink(target).write_messages(messages, now)

    def _files(self) -> list[Sink]:
        return list(dict.fromkeys([self.raw, *self.sinks]))

    # -- the loop ----------------------------------------------------------------------

    def run(self) -> int:
        signal.set_wakeup_fd(-1)  # (a respawned one inherits the master's handlers)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGQUIT):
            signal.signal(signum, signal.SIG_IGN)
        release_stops()  # (held since the fork)
        next_tick = time.time() + TICK
        while True:
            for key, _ in self.selector.select(max(0.0, next_tick - time.time())):
                now = time.time()
                if key.data is None:
                    self._control(now)
                else:
                    self._read(key.data, now)
            now = time.time()
            if self.stopping:
                self.drain(now)
                return 0
            if self.retired and not self.sources:
                self.close()
                return 0
            if now >= next_tick:
                self.tick(now)
                next_tick = now + TICK

    def tick(self, now: float) -> None:
        for source in list(self.sources.values()):
            if source.lines.stale(now):
                self.dispatch(source.lines.flush(), source.requests, now)
        for sink in self._files():
            if sink.due():
                sink.rotate(now)  # (a rotation by size waiting for a free name)
        if now >= self.next_report:
            self.report(now)
            self.next_report = now + REPORT_EVERY

    def report(self, now: float) -> None:
        """One line per sink that lost lines since the last report."""
        for sink in self._files():
            lost = sink.dropped - self.reported.get(id(sink), 0)
            if lost > 0:
                self.reported[id(sink)] = sink.dropped
                line = (f"{stamp(now)} - log master: {lost} line(s) lost on {sink.label} "
                        f"({sink.reason})\n")
                self.raw.write(line.encode(), now)

    def drain(self, now: float) -> None:
        """Read what the pipes hold now (their writers may live on), then close."""
        for source in list(self.sources.values()):
            self._read(source, now, limit=1 << 16, to_the_end=True)
            if source.fd in self.sources:
                self._end(source, now)
        self.report(now)
        self.close()

    def close(self) -> None:
        for sink in self._files():
            sink.close()

    # -- the master's commands ---------------------------------------------------------

    def _control(self, now: float) -> None:
        try:
            message, fds = control.receive(self.ctl)
        except BlockingIOError:
            return
        except OSError:
            message, fds = None, []
        if message is None:  # the master closed its end
            for fd in fds:
                os.close(fd)
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(self.ctl)
            self.stopping = self.stopping or not self.retired
            return
        op = message.get("op")
        if op == "add":
            for item, fd in zip(message.get("sources", []), fds, strict=False):
                self.add(Source(fd, str(item.get("name", "?")), bool(item.get("req"))))
            for fd in fds[len(message.get("sources", [])):]:
                os.close(fd)
        elif op == "rotate":
            for sink in self._files():
                if isinstance(sink, FileSink) and not sink.rotate(now):
                    sink.rotate_waiting = True  # (the epoch name is taken: next second)
        elif op == "reopen":
            for sink in self._files():
                sink.reopen(now)
        elif op == "reload":  # (the master re-executed: as a new uWSGI master opens them)
            for sink in dict.fromkeys(self.sinks):
                if sink is not self.raw:
                    sink.follow()
            if message.get("logfile"):
                self.raw.follow()
        elif op == "stop":
            self.stopping = True
        elif op == "retire":
            self.retired = True
            for sink in self._files():
                if isinstance(sink, FileSink):
                    sink.maxsize = 0  # the next log master rotates from now on


def _chains(specs: Sequence[EncoderSpec], loggers: Sequence[LoggerSpec], first: int
            ) -> dict[int, Chain]:
    """The encoder chain of each logger (index ``first`` on) and, for ``first`` 0, of
    the plain log; only the ones that encode."""
    if not specs:
        return {}
    found = {Routing.RAW: chain_for(specs, None)} if first == 0 else {}
    for i, spec in enumerate(loggers):
        found[first + i] = chain_for(specs, spec.name)
    return {target: chain for target, chain in found.items() if chain}
