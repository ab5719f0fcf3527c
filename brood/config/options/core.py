"""Options read by the core part: the master, process identity, logging, config files."""

from brood.config.option import Option
from brood.config.options.routers import NO_ZERG

# Config logic (brood.config.logic): read as the config is assembled, never options of
# the running instance. On the command line they work as in a file:
# --for "a b" --socket /tmp/%(_).sock --endfor.
_FORS = (("for", "repeat what follows up to endfor for each space-separated item, "
                 "%(_) being the item", "ITEMS"),
         ("for-glob", "... for each path a glob matches", "GLOB"),
         ("for-times", "... N times, %(_) being 1..N", "N"),
         ("for-readline", "... for each line of FILE", "FILE"))
_IFS = (("exists", "PATH is readable", "PATH", ("ifexists",)),
        ("file", "PATH is a file", "PATH", ()),
        ("dir", "PATH is a directory", "PATH", ("ifdir", "if-directory")),
        ("env", "the environment variable is set (to VALUE)", "NAME[=VALUE]", ("ifenv",)),
        ("opt", "the option or placeholder was given before (as VALUE)", "NAME[=VALUE]", ()),
        ("hostname", "the host name is NAME", "NAME", ()),
        ("hostname-match", "the host name matches the regular expression", "REGEXP", ()),
        ("plugin", "uWSGI would have the plugin: brood has python, http, corerouter, "
                   "fastrouter, rawrouter and cache", "NAME", ("ifplugin",)))
LOGIC_OPTIONS = [
    *(Option(name, "core", text, multi=True, metavar=metavar) for name, text, metavar in _FORS),
    *(Option(f"if-{name}", "core", f"read what follows up to endif only if {text}",
             multi=True, metavar=metavar, aliases=aliases)
      for name, text, metavar, aliases in _IFS),
    *(Option(f"if-not-{name}", "core", f"... only if not: {text}", multi=True,
             metavar=metavar) for name, text, metavar, _ in _IFS),
    Option("if-reload", "core", "read what follows up to endif only in a master "
           "re-executed by a reload", kind="bool"),
    Option("if-not-reload", "core", "... only at the first start (not on a reload)",
           kind="bool"),
    Option("endfor", "core", "end a for block", kind="bool", aliases=("end-for",)),
    Option("endif", "core", "end an if-* block", kind="bool", aliases=("end-if",)),
]

OPTIONS: list[Option] = [
    Option("ini", "core", "load options from an ini file ([uwsgi] section, or FILE:SECTION)",
           multi=True, metavar="FILE[:SECTION]"),
    Option("help", "core", "show this help and exit", kind="bool", short="h",
           aliases=("usage",)),
    Option("version", "core", "print the version and exit", kind="bool"),
    Option("set-placeholder", "core", "set a placeholder: %(NAME) in any value (its own "
           "value is kept as written, as uWSGI keeps it)", multi=True, aliases=("set-ph",),
           metavar="NAME=VALUE"),
    Option("set", "core", "set an option (NAME is one) or a placeholder", multi=True,
           short="S", metavar="NAME=VALUE"),
    *(Option(name, "core", f"load a {name.upper()} config (uWSGI); refused: brood reads ini "
             "files only", metavar="FILE", aliases=aliases, multi=True,
             refused="brood reads ini files only: write the config as an ini file")
      for name, aliases in (("yaml", ("yml",)), ("json", ("js",)), ("xml", ("xmlconfig",)))),
    Option("include", "core", "read an ini file here, as --ini does (uWSGI's name)",
           multi=True, metavar="FILE[:SECTION]"),
    Option("inherit", "core", "read an ini file as a template once everything else is read "
           "(its values are not expanded, as in uWSGI)", multi=True, metavar="FILE[:SECTION]"),
    Option("show-config", "core", "print the assembled configuration (uWSGI's format) on "
           "the log, then start", kind="bool"),
    *LOGIC_OPTIONS,
    Option("strict", "core", "refuse ini keys that are no brood option (without it they "
           "are logged and ignored, as uWSGI keeps them as placeholders)", kind="bool"),
    Option("plugins", "core", "accepted so uWSGI ini files load; brood has everything built in",
           multi=True, aliases=("plugin",), metavar="LIST"),
    Option("need-plugins", "core", "stop unless brood has these uWSGI plugins (LIST: "
           "names separated by commas): it has python (python3...), http, corerouter, "
           "fastrouter, rawrouter and cache built in", multi=True, metavar="LIST",
           aliases=("need-plugin",)),
    Option("master", "core", "accepted for uWSGI compatibility, no effect: brood always runs "
           "its master, which supervises and respawns the other processes", kind="bool",
           short="M"),
    Option("daemonize", "core", "detach from the terminal and log to FILE",
           short="d", metavar="LOGFILE", aliases=("daemonize2",)),
    Option("logto", "core", "log to FILE instead of stderr (without detaching)",
           metavar="LOGFILE"),
    Option("pidfile", "core", "write the master's pid to FILE", metavar="FILE"),
    Option("vacuum", "core", "remove unix sockets and pidfiles on exit", kind="bool"),
    Option("uid", "core", "drop privileges to this user (name or number); its groups "
           "(initgroups) replace root's supplementary groups, with or without --gid",
           metavar="USER"),
    Option("gid", "core", "drop privileges to this group (name or number)", metavar="GROUP"),
    Option("die-on-term", "core", "SIGTERM shuts down instead of reloading", kind="bool"),
    Option("touch-reload", "core", "reload gracefully when FILE's mtime changes",
           multi=True, metavar="FILE"),
    Option("reload", "core", "action: gracefully reload the instance whose pid is in PIDFILE",
           metavar="PIDFILE"),
    Option("stop", "core", "action: stop the instance whose pid is in PIDFILE",
           metavar="PIDFILE"),
    Option("no-reload-app-check", "core", "reload without first importing the app in a "
           "separate process (that check refuses a reload whose app no longer loads, and "
           "the old code serves on)", kind="bool"),
    *(Option(name, "core", f"{what} (uWSGI); refused: {NO_ZERG}", metavar=metavar,
             multi=True, aliases=aliases, refused=NO_ZERG)
      for name, what, metavar, aliases in (
          ("zerg", "attach the workers to a zerg server", "PATH", ()),
          ("zerg-server", "run a zerg server on a unix socket", "PATH", ()),
          ("zergpool", "run a zerg pool", "PATH:ADDR", ("zerg-pool",)))),
    Option("zerg-fallback", "core", "fall back to the workers' own sockets when the zerg "
           f"server is gone (uWSGI); refused: {NO_ZERG}", kind="bool", refused=NO_ZERG),
    Option("max-fd", "core", "set the open file limit (soft and hard; raising the hard "
           "limit needs root) for every process; routers otherwise raise their soft limit "
           "to the hard one", kind="int", metavar="N"),
    Option("chdir", "core", "change to DIR before loading apps", metavar="DIR"),
    Option("env", "core", "set an environment variable", multi=True, metavar="KEY=VALUE"),
    Option("pythonpath", "core", "add DIR to sys.path", multi=True,
           aliases=("python-path", "pp"), metavar="DIR"),
    Option("home", "core", "use the virtualenv in DIR", short="H",
           aliases=("virtualenv", "venv", "pyhome"), metavar="DIR"),
    Option("shared-socket", "core",
           "bind ADDR in the master; others refer to it as =N (N counts from 0)",
           multi=True, metavar="ADDR"),
    Option("listen", "core", "listen queue (backlog) of bound sockets", kind="int",
           default=100, short="l", metavar="N", high=65535),
    Option("buffer-size", "core", "largest request head / uwsgi packet accepted, in bytes",
           kind="size", default=4096, short="b", high=1 << 30),
    Option("reuse-port", "core", "set SO_REUSEPORT on bound TCP sockets", kind="bool"),
    Option("chmod-socket", "core", "set the mode of the unix sockets bound (octal, e.g. 660; "
           "bare: 666)", optional=True, implicit="666", metavar="MODE", aliases=("chmod",),
           short="C"),
    Option("no-defer-accept", "core", "accept TCP connections at once, not when their "
           "first bytes have come (TCP_DEFER_ACCEPT: worker, --http and --fastrouter sockets)",
           kind="bool"),
    # Any --procname* or --auto-procname turns process titles on, as in uWSGI:
    # PREFIX + (name or "uWSGI master" / "uWSGI worker N" / "uWSGI http N") + APPEND.
    Option("auto-procname", "core", "set process titles: uWSGI master, uWSGI worker N, "
           "uWSGI http N...", kind="bool"),
    Option("procname-prefix", "core", "set process titles, prefixed with STR", metavar="STR"),
    Option("procname-prefix-spaced", "core", "set process titles, prefixed with STR and a "
           "space", metavar="STR"),
    Option("procname-append", "core", "set process titles, with STR appended", metavar="STR"),
    Option("procname", "core", "set the title of every process (the master's too unless "
           "--procname-master) to NAME", metavar="NAME"),
    Option("procname-master", "core", "set the master's process title to NAME",
           metavar="NAME"),
    Option("disable-logging", "core", "do not log requests (the workers' lines and the "
           "http router's)", kind="bool", short="L"),
    Option("log-format", "core", "workers' request log line, with uWSGI's %(var) names: "
           "%(addr) %(user) %(ltime) %(method) %(uri) %(proto) %(status) %(size) %(referer) "
           "%(uagent) %(host) %(msecs) %(var.NAME)...; another name is a uWSGI logvar, "
           "written as -",
           aliases=("logformat",), metavar="FORMAT"),
    Option("log-4xx", "core", "with --disable-logging, still log the requests answered 4xx",
           kind="bool"),
    Option("log-5xx", "core", "with --disable-logging, still log the requests answered 5xx",
           kind="bool"),
    Option("log-zero", "core", "with --disable-logging, still log the requests answered "
           "with an empty body", kind="bool"),
    Option("log-slow", "core", "with --disable-logging, still log the requests that took "
           "at least N msecs", kind="int", default=0, metavar="MSECS"),
    Option("log-big", "core", "with --disable-logging, still log the requests answered "
           "with a body of at least N bytes", kind="int", default=0, metavar="BYTES"),
    # uWSGI 2.0 declares these two with a value: a boolean word after them is theirs
    Option("log-sendfile", "core", "with --disable-logging, still log the requests whose "
           "file went out with sendfile", kind="bool", extra={"value_follows": True}),
    Option("log-ioerror", "core", "with --disable-logging, still log the requests whose "
           "client went away (a failed read or write; uWSGI asks for both)", kind="bool",
           extra={"value_follows": True}),
    Option("log-micros", "core", "request lines give the time in micros, not msecs",
           kind="bool"),
    Option("log-x-forwarded-for", "core", "request lines give the X-Forwarded-For the "
           "request came with as its address, instead of REMOTE_ADDR", kind="bool"),
    Option("master-fifo", "core",
           "read one-letter commands from this FIFO (r/R reload, q/Q stop, w/W/c reload "
           "workers, s stats, l/L reopen/rotate the log, P pidfile, S subscriptions); "
           "repeat for several, "
           "the first is active, '0'..'9' switch",
           multi=True, metavar="PATH"),
]
