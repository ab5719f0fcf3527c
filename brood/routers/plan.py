"""Plan contributor for the router processes: binds ``--http``/``--fastrouter``/
``--rawrouter`` sockets in the master and forks ``--X-processes`` trio processes on them.

Embedded mode (``brood --http :8080 --wsgi-file app.py -p 4``), as uWSGI does it: an
``--http`` router with no mapping of its own routes to the instance's own workers. When
the instance has an app but no worker socket, ``embedded_config`` first adds a uwsgi
socket on 127.0.0.1 with a kernel-chosen port; the router is then pointed at the worker
sockets once they are bound (their real names are only known then).

Per-kind extras (the subscription feed, the stats snapshot share, the table that spreads
connections evenly over the processes) plug in through ``ROUTER_EXTRAS``: a callable
``(cfg, builder, kind, count) -> (index -> dict)`` run at plan time in the master; the
dict it returns for a process index is passed to ``run_router`` as keyword arguments.

``--X-stats`` is bound here too, once, and handed to every process of the kind.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

from brood.config.model import Config
from brood.config.option import OptionError
from brood.log import log
from brood.master_env import check_privileges, drop_privileges, user_id
from brood.plan import ChildSpec, PlanBuilder, register_config_hook, register_contributor
from brood.routers.http.settings import split_https_port
from brood.routers.net.spread import SpreadTable
from brood.routers.stats_share import stats_share_extras
from brood.sockets import defer_accept, kernel_name

# The sslrouter's options are declared (so uWSGI ini files parse) with ``refused=``: the
# master stops at start-up naming the option (brood.config.model.refuse_unavailable).
KINDS = ("http", "fastrouter", "rawrouter")
# Options that give a router nodes of its own; without any, --http is embedded mode.
_MAPPERS = ("to", "use-pattern", "use-base", "use-cache", "use-code-string", "use-socket",
            "subscription-server")
# Seconds an --http/--fastrouter connection may wait for its first bytes before it is
# handed to a router process anyway (TCP_DEFER_ACCEPT; uWSGI's --socket-timeout default).
DEFER_ACCEPT = 4
# Where embedded mode puts the workers when the config names no socket.
EMBEDDED_SOCKET = "127.0.0.1:0"

ExtrasFactory = Callable[[Config, PlanBuilder, str, int], Callable[[int], dict[str, Any]]]


def spread_extras(cfg: Config, b: PlanBuilder, kind: str,
                  count: int) -> Callable[[int], dict[str, Any]]:
    """A ``ROUTER_EXTRAS`` factory: the table that keeps a kind's connections even over
    its processes (``brood.routers.net.spread``), mapped here, before they are forked."""
    if count < 2:
        return lambda index: {}
    table = SpreadTable(count)
    return lambda index: {"spread": table}


ROUTER_EXTRAS: list[ExtrasFactory] = [stats_share_extras, spread_extras]


def _has_mapping(cfg: Config, kind: str) -> bool:
    return any(cfg.get(f"{kind}-{m}") for m in _MAPPERS)


def _has_app(cfg: Config) -> bool:
    return bool(cfg["wsgi-file"] or cfg["module"])


@register_config_hook
def embedded_config(cfg: Config) -> Config:
    """Add the internal worker socket embedded mode needs, if the config lacks one."""
    if (cfg["http"] and not _has_mapping(cfg, "http") and _has_app(cfg)
            and not cfg["socket"] and not cfg["http-socket"]):
        return cfg.with_values(socket=[EMBEDDED_SOCKET])
    return cfg


@register_contributor
def contribute_routers(cfg: Config, b: PlanBuilder) -> None:
    """Bind each router's sockets and add its processes."""
    for kind in KINDS:
        addresses = cfg[kind]
        redirects = cfg["http-to-https"] if kind == "http" else []
        if not addresses and not redirects:
            continue
        router_cfg = cfg
        if kind == "http" and not _has_mapping(cfg, kind):
            # The workers' real addresses ("localhost:N" as written would cost a name
            # lookup per connect).
            own = [kernel_name(lst.sock) for lst in b.plan.worker_listeners
                   if lst.proto == "uwsgi"]
            if own:
                router_cfg = cfg.with_values(http_to=own)
                router_cfg.embedded = True
        _check_kind(router_cfg, kind)
        count = max(1, int(cfg[f"{kind}-processes"] or 1))
        # The extras first: a subscription server is bound there, before the sockets
        # clients and nodes connect to (a node that announces as soon as the router's
        # port answers must not find its datagram port closed).
        extras = [factory(router_cfg, b, kind, count) for factory in ROUTER_EXTRAS]
        listeners = [b.listen(addr, kind, kind, f"uWSGI {kind} socket {i}")
                     for i, addr in enumerate(addresses)]
        # --http-to-https: sockets of the HTTP router that answer every request with a 301.
        for i, spec in enumerate(redirects):
            addr, port = split_https_port(spec)
            lst = b.listen(addr, "http-to-https", "http-to-https",
                           f"uWSGI http-to-https socket {i}")
            lst.https_port = port
            listeners.append(lst)
        if kind != "rawrouter":  # (a rawrouter's node may speak first: uWSGI's neither)
            defer = 0 if cfg["no-defer-accept"] else DEFER_ACCEPT
            for lst in listeners:
                defer_accept(lst.sock, defer)
        if cfg.get(f"{kind}-stats"):
            # One socket for all the processes of the kind (any of them answers with the
            # merged figures, see stats_share), kept across reloads like the others.
            listeners.append(b.listen(cfg[f"{kind}-stats"], f"{kind}-stats", f"{kind}-stats",
                                      f"uWSGI {kind} stats server"))
        b.add_child(ChildSpec(kind, count, _target(kind, router_cfg, listeners, extras),
                              signal.SIGHUP, None, f"uWSGI {kind}"))


def _check_spool_dir(cfg: Config) -> None:
    """--fastrouter-post-buffering-dir must be a directory: found at startup, not by
    every request whose body goes to a file."""
    directory = cfg.get("fastrouter-post-buffering-dir")
    if directory and not os.path.isdir(directory):
        raise OptionError(f"--fastrouter-post-buffering-dir: {directory!r} is not a directory")
    uid, gid = cfg.get("fastrouter-uid"), cfg.get("fastrouter-gid")
    check_privileges(uid, gid, "fastrouter-")  # (their own line first)
    if directory and (uid or gid) and not _writable_as(directory, uid, gid):
        raise OptionError(f"--fastrouter-post-buffering-dir: {directory!r} is not writable "
                          f"by the fastrouter's user (--fastrouter-uid/--fastrouter-gid)")


def _writable_as(directory: str, uid: str | None, gid: str | None) -> bool:
    """Whether the routers, once dropped to ``uid``/``gid``, may make files in
    ``directory``: asked in a child that drops as they will."""
    pid = os.fork()
    if pid == 0:
        ok = False
        try:
            drop_privileges(uid, gid, "fastrouter-", quiet=True)
            ok = os.access(directory, os.W_OK | os.X_OK)
        finally:
            os._exit(0 if ok else 1)
    return os.waitpid(pid, 0)[1] == 0


def _check_resolver(cfg: Config, kind: str) -> None:
    """Build the router's resolver once in the master, so that a code-string file that
    does not load, a --X-use-socket beyond the sockets or a bad algorithm stops the start
    with one line (in a router process it would fail, and be respawned, for ever). The
    code-string file is only read and parsed here: it runs in the router processes,
    after the privileges are dropped, as in uWSGI."""
    from brood.routers.resolve import build_resolver
    from brood.routers.resolve.mappers import CodeResolver

    option = f"{kind}-use-code-string"
    try:
        if cfg.get(option):
            try:
                CodeResolver.check_spec(cfg[option])
            except ValueError as exc:
                raise ValueError(f"--{option}: {exc}") from exc
            cfg = cfg.with_values(**{option.replace("-", "_"): None})
        build_resolver(cfg, kind)
    except ValueError as exc:
        raise OptionError(str(exc)) from exc


def _check_kind(cfg: Config, kind: str, resolver: bool = True) -> None:
    """What stops the master at start-up for router ``kind``, before anything is
    forked (no child dies for it): its options, its nodes' mapping (unless
    ``resolver`` is False), its user."""
    if kind == "http":
        from brood.routers.http.settings import HttpSettings

        HttpSettings.from_config(cfg)  # a bad --http-* value
    if kind == "fastrouter":
        _check_spool_dir(cfg)
    if resolver:
        _check_resolver(cfg, kind)
    uid, gid = cfg.get(f"{kind}-uid"), cfg.get(f"{kind}-gid")
    check_privileges(uid, gid, f"{kind}-")
    if uid and cfg.get("uid") and user_id(uid) != user_id(cfg["uid"]):
        # The master drops to --uid before it forks: its children cannot switch again.
        raise OptionError(f"--{kind}-uid {uid}: the master runs as --uid {cfg['uid']} "
                          "by then; give one or the other")


def check_routers(cfg: Config) -> None:
    """The start-up checks of every router ``cfg`` asks for, without binding: a reload
    runs them on the config it would re-execute into."""
    for kind in KINDS:
        if cfg[kind] or (kind == "http" and cfg["http-to-https"]):
            # (embedded mode: the nodes are the instance's own workers, known once bound)
            embedded = kind == "http" and not _has_mapping(cfg, kind) and _has_app(cfg)
            _check_kind(cfg, kind, resolver=not embedded)


def _target(kind: str, cfg: Config, listeners: list, extras: list) -> Callable[[int], int]:
    uid, gid = cfg.get(f"{kind}-uid"), cfg.get(f"{kind}-gid")

    def run(index: int) -> int:
        from brood.routers.process import run_router

        kwargs: dict[str, Any] = {}
        for per_index in extras:
            kwargs.update(per_index(index))
        if uid or gid:  # --X-uid/--X-gid: the router process alone, as uWSGI's gateways
            try:
                drop_privileges(uid, gid, f"{kind}-")
            except OptionError as exc:
                log(str(exc))
                return 1
        return run_router(kind, index, cfg, listeners, **kwargs)

    return run
