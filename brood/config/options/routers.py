"""Options read by the routers part: the HTTP router, fastrouter, rawrouter, sslrouter.

The options every uWSGI corerouter shares are declared once, by :func:`shared_options`,
for each prefix; then each router's own. Names follow uWSGI 2.0's plugin option tables
(plugins/{http,fastrouter,rawrouter,sslrouter}); a help text ending in "(brood)" marks
an addition uWSGI does not have for that prefix.

Parts not in this release (zerg, the sslrouter) and uWSGI features brood does not have
are declared with ``refused=``: ini files carrying them load, and setting one stops
start-up with a line naming it. The tuning options of those parts stay plain: alone they
ask for nothing.
"""

from __future__ import annotations

from brood.config.option import MAX_PROCESSES, Option

ROUTER_PREFIXES: tuple[str, ...] = ("http", "fastrouter", "rawrouter", "sslrouter")

NO_ZERG = "zerg servers and pools are not in this release"
NO_SSLROUTER = "the sslrouter is not in this release"

# The --X-algo choices; kept equal to brood.routers.balance.ALGORITHMS (a test checks),
# not imported from there so the option table loads without the routing code.
ALGO_CHOICES: tuple[str, ...] = ("wrr", "rr", "lrc", "wlrc", "iphash", "p2c", "chash")

_TITLE = {
    "http": "http router",
    "fastrouter": "fastrouter",
    "rawrouter": "rawrouter",
    "sslrouter": "sslrouter",
}

# uWSGI declares these per-prefix options only for some routers; elsewhere brood adds them.
_UWSGI_HAS = {
    "max-retries": {"rawrouter", "sslrouter"},
    "connect-timeout": {"http"},
    "subscription-fallback-key": {"http", "fastrouter"},
    "resubscribe": {"http", "fastrouter"},
    "resubscribe-bind": {"fastrouter"},
    "algo": set(),
    "session-max-age": set(),
}


def _mark(prefix: str, suffix: str, text: str) -> str:
    has = _UWSGI_HAS.get(suffix)
    return text if has is None or prefix in has else f"{text} (brood)"


def shared_options(prefix: str) -> list[Option]:
    """The options of one corerouter prefix, as uWSGI's corerouter gives every router."""
    p, t = prefix, _TITLE[prefix]

    def opt(suffix: str, help: str, **kw: object) -> Option:
        name = f"{p}-{suffix}"
        aliases = tuple(f"{p}-{a}" for a in kw.pop("aliases", ()))  # type: ignore[union-attr]
        return Option(name, p, _mark(p, suffix, help), aliases=aliases, **kw)  # type: ignore[arg-type]

    if p == "sslrouter":
        listen = Option(p, p, "run the sslrouter on ADDR,CRT,KEY[,CIPHERS[,CLIENT_CA]]",
                        multi=True, metavar="ADDR,CRT,KEY", refused=NO_SSLROUTER)
    else:
        listen = Option(p, p, f"run the {t} on the specified address", multi=True,
                        metavar="ADDR", aliases=("httprouter",) if p == "http" else ())
    return [
        listen,
        opt("processes", f"prefork the specified number of {t} processes", kind="int",
            default=1, aliases=("workers",), high=MAX_PROCESSES),
        opt("zerg", f"attach the {t} to a zerg server", multi=True, metavar="PATH",
            refused=NO_ZERG),
        opt("to", "forward requests to the specified node (repeat it to balance)",
            multi=True, metavar="ADDR"),
        opt("use-pattern", "map the key to a node address with a pattern (%s = the key)",
            metavar="PATTERN"),
        opt("use-base", "map the key to a node address: this base with the key appended",
            metavar="BASE"),
        opt("use-cache", "map the key to node addresses through a cache (optional name)",
            optional=True, implicit="", metavar="NAME"),
        opt("use-code-string", "map the key to a node address with a function "
            "(modifier1:file.py:function)", metavar="SPEC"),
        opt("use-socket", "forward every request to this instance's Nth uwsgi socket "
            "(default 0)", optional=True, implicit="0", metavar="N"),
        opt("fallback", "fallback to the specified node in case of error", multi=True,
            metavar="ADDR"),
        opt("gracetime", "retry connections to dead static nodes after this many seconds",
            kind="int", default=30),
        opt("max-retries", "set the maximum number of retries/fallbacks to other nodes "
            "(0: the default, as uWSGI)",
            kind="int", default=3),
        opt("timeout", f"set the {t} socket timeout in seconds", kind="int", default=60),
        opt("connect-timeout", "timeout for backend connections in seconds "
            f"(default: --{p}-timeout)", kind="int"),
        opt("events", "accepted for uWSGI compatibility, no effect: uWSGI sizes a fixed "
            "event queue with it; trio has none to size", kind="int", default=64),
        opt("stats", f"run the {t} stats server on the specified address",
            aliases=("stats-server", "ss"), metavar="ADDR"),
        opt("harakiri", f"enable {t} harakiri: kill a {t} process whose event loop is "
            "stuck for this many seconds (the master respawns it)", kind="int", default=0),
        opt("session-max-age", "cut a session (connection, or request on keep-alive) older "
            "than this many seconds", kind="int", default=0),
        opt("buffer-size", "set internal buffer size (default: --buffer-size, else 4096)",
            kind="size"),
        opt("cheap", f"run the {t} in cheap mode (accept nothing while there is no node)",
            kind="bool", default=False),
        opt("quiet", "do not report failed connections to instances", kind="bool",
            default=False),
        opt("subscription-server", f"run the {t} subscription server on the address",
            multi=True, metavar="ADDR"),
        opt("subscription-fallback-key", "use the nodes of this key when a key has none",
            metavar="KEY"),
        opt("resubscribe", "announce this router, for the keys its nodes subscribe, to the "
            "specified subscription server (a tier above)",
            multi=True, metavar="ADDR"),
        opt("resubscribe-bind", "bind to the specified address when re-subscribing",
            metavar="ADDR"),
        opt("uid", f"drop {t} privileges to the specified uid", metavar="USER"),
        opt("gid", f"drop {t} privileges to the specified gid", metavar="GROUP"),
        opt("algo", "balancing algorithm among the nodes of a key (default: rr for "
            "--X-to lists, --subscription-algo or wrr for the rest)",
            choices=ALGO_CHOICES, metavar="ALGO"),
    ]


def _http_options() -> list[Option]:
    def opt(name: str, help: str, **kw: object) -> Option:
        return Option(name, "http", help, **kw)  # type: ignore[arg-type]

    return [
        opt("http-var", "add a key=value item to the generated uwsgi packet", multi=True,
            metavar="KEY=VALUE"),
        opt("http-modifier1", "set uwsgi protocol modifier1", kind="int", default=0, high=255),
        opt("http-modifier2", "set uwsgi protocol modifier2", kind="int", default=0, high=255),
        opt("http-keepalive", "HTTP/1.1 keepalive support (non-pipelined requests)",
            kind="int", default=0, optional=True, implicit="1"),
        opt("http-auto-chunked", "chunk the output of keepalive HTTP/1.1 answers with no "
            "Content-Length", kind="bool", default=False),
        opt("http-auto-gzip", "gzip answers carrying a uWSGI-Encoding: gzip header",
            kind="bool", default=False),
        opt("http-to-https", "add an http router on the address that redirects every "
            "request to https (301), to PORT if given, else with the Host's port dropped",
            multi=True, metavar="ADDR[,PORT]"),
        opt("http-headers-timeout", "timeout for the request head in seconds "
            "(default: --http-timeout)", kind="int"),
        opt("http-manage-expect", "with a value over 1, answer 413 to an Expect: "
            "100-continue whose Content-Length is larger (brood answers 100 Continue "
            "itself in any case; bare or 1: no limit)", kind="size", default=0,
            optional=True, implicit="1"),
        opt("http-raw-body", "blindly send the HTTP body to the node", kind="bool",
            default=False),
        opt("http-websockets", "accepted for uWSGI compatibility, no effect: brood relays "
            "every upgrade (websockets...) raw when the node answers 101", kind="bool",
            default=False),
        opt("http-chunked-input", "forward chunked request bodies raw (no CONTENT_LENGTH)",
            kind="bool", default=False),
        opt("http-server-name-as-http-host", "force SERVER_NAME to the Host header",
            kind="bool", default=False),
        opt("http-enable-proxy-protocol", "accept a PROXY protocol header on connections",
            kind="bool", default=False),
        opt("http-manage-source", "relay SOURCE requests (Icecast sources) as a raw pipe after "
            "the head", kind="bool", default=False),
        opt("http-manage-rtsp", "manage RTSP sessions", kind="bool", default=False,
            refused="RTSP is not supported by brood's http router"),
        opt("http-stud-prefix", "expect a stud prefix (1 byte family + 4/16 bytes address, "
            "the client's) on connections from this IP address", multi=True, metavar="ADDR"),
        opt("http-log-format", "the http router's request line (default: the shape of "
            "uWSGI's worker line), with uWSGI %(var) names: addr port method uri proto host "
            "referer uagent cl status size node msecs micros time epoch ctime ltime (brood)",
            metavar="FORMAT"),
    ]


def _fastrouter_options() -> list[Option]:
    def opt(name: str, help: str, **kw: object) -> Option:
        return Option(name, "fastrouter", help, **kw)  # type: ignore[arg-type]

    return [
        opt("fastrouter-post-buffering", "read request bodies up to this size before "
            "contacting the node (0: off)", kind="size", default=0),
        opt("fastrouter-post-buffering-dir", "put buffered bodies in this directory "
            "(default: TMPDIR)", metavar="DIR"),
        opt("fastrouter-fallback-on-no-key", "use the fallback nodes when the request has "
            "no key or the key has no node", kind="bool", default=False),
        opt("fastrouter-force-key", "route every request with this key", metavar="KEY"),
        opt("fastrouter-subscription-slot", "*** deprecated *** (accepted and ignored)",
            kind="int"),
    ]


def _rawrouter_options() -> list[Option]:
    return [
        Option("rawrouter-xclient", "rawrouter", "use the XCLIENT protocol to pass the client "
               "address", kind="bool", default=False),
        Option("rawrouter-subscription-slot", "rawrouter",
               "*** deprecated *** (accepted and ignored)", kind="int"),
    ]


def _sslrouter_options() -> list[Option]:
    return [
        Option("sslrouter2", "sslrouter", "run the sslrouter with key=value options "
               "(addr, cert|crt, key, ciphers, clientca|client_ca)", multi=True,
               metavar="KEYVAL", refused=NO_SSLROUTER),
        Option("sslrouter-session-context", "sslrouter", "set the TLS session id context",
               metavar="NAME", refused=NO_SSLROUTER),
        Option("sslrouter-sni", "sslrouter", "route by the TLS SNI name instead of the "
               "socket name", kind="bool", default=False, refused=NO_SSLROUTER),
    ]


def router_options() -> list[Option]:
    """Every router option, shared ones first, then each router's own."""
    options: list[Option] = []
    for prefix in ROUTER_PREFIXES:
        options.extend(shared_options(prefix))
    options.extend(_http_options())
    options.extend(_fastrouter_options())
    options.extend(_rawrouter_options())
    options.extend(_sslrouter_options())
    return options


OPTIONS: list[Option] = router_options()
