"""What the master runs, derived from a Config: sockets, child processes, master services.

The master knows nothing about WSGI, routers or stats. It asks ``build_plan`` for:

* the listening sockets, bound in uWSGI's order: ``--shared-socket``s first (numbered
  0, 1, ...), then ``--socket``/``--http-socket`` in option order; ``=N`` values resolve
  to shared socket N (same fd, ``shared: 1`` in stats);
* ``ChildSpec``s: kinds of forked children (workers now; routers later), each with a
  count and a ``target(index) -> exit status`` run in the child after the fork;
* ``MasterService``s: things the master loop drives in its own process (stats server,
  subscription announcer, master FIFO); one that needs the master itself (the FIFO asks
  for reloads) gets a ``MasterControl`` through its optional ``attach``;
* ``prepare`` hooks run once after binding and before forking (preloading the app).

Seam for other parts: a *plan contributor* is ``fn(cfg, builder) -> None``; it may call
``builder.listen()``, ``add_child()``, ``add_service()``, ``add_prepare()``. Register it
with ``register_contributor(fn)`` at import time of the part's module, and name that
module in ``CONTRIBUTOR_MODULES`` so ``build_plan`` imports it. Contributors run after
the built-in ones (workers, then the worker stats server), in registration order.
"""

from __future__ import annotations

import importlib
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from brood.config.model import Config
from brood.config.option import OptionError
from brood.listener import Listener
from brood.log import log
from brood.scoreboard import Scoreboard
from brood.sockets import parse_address

# Modules of other parts that call register_contributor() when imported (routers,
# subscription announcer, master FIFO, zerg). Appended to by those parts.
CONTRIBUTOR_MODULES: list[str] = ["brood.routers.plan", "brood.subscription.plan",
                                   "brood.master_fifo"]


@dataclass
class ChildSpec:
    """``count`` children of one kind. ``target(index)`` runs in the forked child with its
    1-based index and returns the exit status the master's child then ``os._exit``s with.

    ``graceful_signal`` asks a child to finish in-flight work and exit (reloads);
    ``scoreboard`` (workers) lets the master do harakiri, rss checks and respawn counts.
    ``label`` names the child in log lines ("uWSGI worker", "uWSGI http").

    ``handoff``: on a graceful reload the master re-executes without waiting for these
    children, and its next incarnation forks their successors at once while they finish
    their open sessions (``brood.master_children``). For children that stop accepting
    at their graceful signal and that the master watches through no scoreboard: the
    routers, whose long sessions (WebSockets, raw TCP) would otherwise keep new
    connections waiting for the whole mercy. None (the default): children without a
    scoreboard; workers are waited for, as in uWSGI.
    """

    kind: str
    count: int
    target: Callable[[int], int]
    graceful_signal: int = signal.SIGHUP
    scoreboard: Scoreboard | None = None
    label: str = ""
    handoff: bool | None = None

    def __post_init__(self) -> None:
        if not self.label:
            self.label = f"uWSGI {self.kind}"
        if self.handoff is None:
            self.handoff = self.scoreboard is None


class MasterService(Protocol):
    """Something the synchronous master loop drives in its own process.

    ``fileno()``: an fd to watch for readability, or None (tick-only). ``on_readable``
    is called when it is readable, ``tick`` once per master cycle (about 1 s), both with
    ``time.time()``. ``on_reload(graceful=)`` runs before a reload stops the children,
    ``on_shutdown`` before exit; ``close_in_child`` in every forked child, to drop fds
    the child must not keep. None of them may block for long: the master serves signals.
    Optional: ``before_shutdown(graceful=)`` runs before a shutdown stops the children;
    it and ``on_reload`` may return seconds the children should keep serving on a
    graceful stop (``Master.before_stop``). ``attach(control)`` is called once, in the
    master after the app is preloaded and before children are forked, with the
    ``MasterControl``; an OptionError it raises stops start-up. ``fileno()`` may change
    after ``attach`` or ``on_readable``: the master asks again and watches the new fd.
    """

    def fileno(self) -> int | None: ...
    def on_readable(self, now: float) -> None: ...
    def tick(self, now: float) -> None: ...
    def on_reload(self, graceful: bool | None = None) -> float | None: ...
    def on_shutdown(self) -> None: ...
    def close_in_child(self) -> None: ...


class MasterControl(Protocol):
    """What the master lets a service ask of it (the master FIFO's commands). Each call
    only records or starts the action and returns at once; the master loop carries it
    out. Once a reload or shutdown is under way, reloads (of the master or the workers)
    are logged and ignored, and a ``shutdown`` makes a reload end in exit."""

    plan: Plan
    stopping: bool  # a reload or shutdown is stopping the children

    def reload(self, graceful: bool) -> None: ...
    def shutdown(self, graceful: bool) -> None: ...
    def reload_workers(self, graceful: bool) -> None: ...
    def chain_reload(self) -> None: ...
    def reopen_log(self) -> None: ...
    def rotate_log(self) -> None: ...
    def update_pidfile(self) -> None: ...
    def log_stats(self) -> None: ...


# binder(spec, proto, option, label) -> Listener: binds, or adopts an fd kept across re-exec.
Binder = Callable[[str, str, str, str], Listener]


@dataclass(frozen=True)
class SocketSpec:
    """One socket option value in binding order (pure; see ``socket_specs``)."""

    option: str  # "shared-socket", "socket", "http-socket"
    spec: str
    proto: str  # "uwsgi" / "http" ("shared" for --shared-socket itself)
    number: int  # its number in its own list: shared socket N or uwsgi socket K


_WORKER_SOCKET_PROTO = {"socket": "uwsgi", "http-socket": "http"}


def socket_specs(cfg: Config) -> list[SocketSpec]:
    """Shared sockets first, then worker sockets in the order they were given.

    A worker socket written exactly as an earlier one is that socket, bound once with
    the first one's protocol, as uWSGI does (an ini and the command line that starts it
    often both name it); ``repeated_sockets`` says which were dropped. Each ``:0`` is
    its own ephemeral port, as there.
    """
    shared = [SocketSpec("shared-socket", v, "shared", i)
              for i, v in enumerate(cfg["shared-socket"])]
    workers: list[SocketSpec] = []
    for name, value, again in _worker_socket_values(cfg):
        if again is None:
            workers.append(SocketSpec(name, value, _WORKER_SOCKET_PROTO[name], len(workers)))
    return shared + workers


def repeated_sockets(cfg: Config) -> list[str]:
    """A line for each worker socket ``socket_specs`` dropped as written twice."""
    lines = []
    for name, value, first in _worker_socket_values(cfg):
        if first is not None:
            how = ("" if first == name else
                   f", speaking {_WORKER_SOCKET_PROTO[first]} as its first --{first} says")
            lines.append(f"--{name} {value}: given before, bound once{how}")
    return lines


def _worker_socket_values(cfg: Config) -> list[tuple[str, str, str | None]]:
    """(option, value, option that gave the same value first, else None) in order."""
    firsts: dict[str, str] = {}
    found = []
    for name, raw in cfg.ordered():
        if name in _WORKER_SOCKET_PROTO:
            value = str(raw)
            found.append((name, value, firsts.get(value)))
            if not _ephemeral(value):
                firsts.setdefault(value, name)
    return found


def _ephemeral(value: str) -> bool:
    try:
        addr = parse_address(value)
    except OptionError:
        return False  # its bind says what is wrong with it
    return addr.kind == "tcp" and addr.port == 0


@dataclass
class Plan:
    """Everything the master runs. ``listeners``: every socket bound or inherited."""

    cfg: Config
    listeners: list[Listener] = field(default_factory=list)
    shared: list[Listener] = field(default_factory=list)
    worker_listeners: list[Listener] = field(default_factory=list)
    children: list[ChildSpec] = field(default_factory=list)
    services: list[Any] = field(default_factory=list)  # MasterService
    prepare: list[Callable[[], None]] = field(default_factory=list)

    def child(self, kind: str) -> ChildSpec | None:
        return next((c for c in self.children if c.kind == kind), None)

    def shut_down_services(self) -> None:
        """Every service's ``on_shutdown``, at exit and when start-up fails part way
        (so a bound subscription socket file, the FIFO or the stats snapshot directory
        is not left behind); one that fails does not keep the others from theirs."""
        for svc in self.services:
            try:
                svc.on_shutdown()
            except Exception as exc:
                log(f"shutdown: {type(svc).__name__}: {exc}")


class PlanBuilder:
    """Handed to contributors; collects sockets, children, services and hooks."""

    def __init__(self, cfg: Config, binder: Binder) -> None:
        self.cfg = cfg
        self.plan = Plan(cfg)
        self._binder = binder

    def bind_shared(self) -> None:
        for spec in socket_specs(self.cfg):
            if spec.option == "shared-socket":
                if parse_address(spec.spec, "shared-socket").is_reference:
                    raise OptionError(f"--shared-socket {spec.spec}: cannot reference itself")
                lst = self._binder(spec.spec, "shared", "shared-socket",
                                   f"uwsgi shared socket {spec.number}")
                lst.shared, lst.shared_index = True, spec.number
                self.plan.shared.append(lst)
                self.plan.listeners.append(lst)

    def listen(self, spec: str, proto: str, option: str, label: str) -> Listener:
        """A listener for ``spec``: ``=N`` maps to shared socket N, else bind (or inherit)."""
        addr = parse_address(spec, option)
        if addr.is_reference:
            if addr.number >= len(self.plan.shared):
                raise OptionError(f"--{option} {spec}: there is no shared socket {addr.number}")
            base = self.plan.shared[addr.number]
            log(f"{label} mapped to shared socket {addr.number} ({base.name}) fd {base.fileno()}")
            return Listener(base.sock, base.name, proto, shared=True, shared_index=addr.number)
        lst = self._binder(spec, proto, option, label)
        self.plan.listeners.append(lst)
        return lst

    def add_child(self, child: ChildSpec) -> None:
        self.plan.children.append(child)

    def add_service(self, service: MasterService) -> None:
        self.plan.services.append(service)

    def add_prepare(self, hook: Callable[[], None]) -> None:
        self.plan.prepare.append(hook)


Contributor = Callable[[Config, PlanBuilder], None]
_contributors: list[Contributor] = []
ConfigHook = Callable[[Config], Config]
_config_hooks: list[ConfigHook] = []


def register_config_hook(fn: ConfigHook) -> ConfigHook:
    """Add a config rewrite run before binding (embedded mode adds its worker socket)."""
    if fn not in _config_hooks:
        _config_hooks.append(fn)
    return fn


def register_contributor(fn: Contributor) -> Contributor:
    """Add a plan contributor (usable as a decorator); idempotent per function."""
    if fn not in _contributors:
        _contributors.append(fn)
    return fn


def contribute_workers(cfg: Config, b: PlanBuilder) -> None:
    """Worker sockets and the prefork WSGI workers serving them."""
    for line in repeated_sockets(cfg):
        log(line)
    listeners = [b.listen(s.spec, s.proto, s.option, f"uwsgi socket {s.number}")
                 for s in socket_specs(cfg) if s.option != "shared-socket"]
    if not listeners:
        return
    b.plan.worker_listeners = listeners
    count = max(1, int(cfg["processes"] or 1))
    if cfg["log-format"]:
        from brood.workers.reqlog import compile_format, logvars

        compile_format(str(cfg["log-format"]))  # a bad --log-format stops the master here
        for name in logvars(str(cfg["log-format"])):
            log(f"--log-format: %({name}) is no request variable brood knows: written as - "
                "(a uWSGI logvar, which apps set through uWSGI's uwsgi module)")
    from brood.workers.static import check_options

    for line in check_options(cfg):  # a bad --static-map, --add-header... stops it here
        log(line)
    from brood.workers.mount import mount_lines

    for line in mount_lines(cfg["mount"] or ()):  # a --mount without "=" stops it here
        log(line)
    board = Scoreboard(count, cores=max(1, int(cfg["threads"] or 1)))
    loaded: dict[str, Any] = {}
    if cfg["shared-import"]:
        def shared_import() -> None:
            from brood.workers.loader import import_modules, prepare_process

            prepare_process(cfg)  # (the imports see --pythonpath, --chdir...)
            import_modules(cfg["shared-import"], log)

        b.add_prepare(shared_import)
    if not (cfg["lazy-apps"] or cfg["lazy"]):
        def preload() -> None:
            from brood.workers.loader import load_app

            loaded["app"] = load_app(cfg)

        b.add_prepare(preload)

    # Imported here, in the master before it drops --uid/--gid, rather than in each
    # forked worker: a worker must not need to read the interpreter's files as that user.
    from brood.workers.wsgi import run_worker

    def run(index: int) -> int:
        return run_worker(index, listeners, loaded.get("app"), cfg, board.slot(index))

    b.add_child(ChildSpec("worker", count, run, signal.SIGHUP, board, "uWSGI worker"))


def contribute_stats(cfg: Config, b: PlanBuilder) -> None:
    """The worker stats server (``--stats``), served from the master."""
    if not cfg["stats"]:
        return
    from brood.stats import StatsServer

    lst = b.listen(cfg["stats"], "stats", "stats", "stats server")
    b.add_service(StatsServer.for_plan(lst, b.plan))


def build_plan(cfg: Config, binder: Binder) -> Plan:
    """Bind everything ``cfg`` asks for and collect the children and services."""
    for module in CONTRIBUTOR_MODULES:
        importlib.import_module(module)
    for hook in _config_hooks:
        cfg = hook(cfg)
    from brood.config.logic import check_plugins

    check_plugins(cfg["need-plugins"] or ())
    b = PlanBuilder(cfg, binder)
    try:
        b.bind_shared()
        for fn in (contribute_workers, contribute_stats, *_contributors):
            fn(cfg, b)
    except BaseException:
        b.plan.shut_down_services()  # the master never saw this plan: nobody else will
        raise
    return b.plan
