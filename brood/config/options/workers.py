"""Options read by the workers part: the sockets workers serve and the WSGI app they run."""

from brood.config.option import MAX_WORKERS, Option

OPTIONS: list[Option] = [
    Option("socket", "workers", "serve the uwsgi protocol on ADDR (host:port, /path, @abstract, =N)",
           short="s", aliases=("uwsgi-socket",), multi=True, metavar="ADDR"),
    Option("http-socket", "workers", "serve plain HTTP/1.1 on ADDR, with keep-alive (each "
           "answer framed by Content-Length or chunked; uWSGI's --http-socket closes after "
           "each answer, its --http11-socket keeps even unframed ones open)", multi=True,
           metavar="ADDR", aliases=("http11-socket",)),
    # 0 == False: refuse_unavailable lets 0 through and refuses any other number
    Option("http-socket-modifier1", "workers", "the uWSGI plugin HTTP socket requests go "
           "to: 0 (Python/WSGI), the only one brood has", kind="int", metavar="N", high=255,
           refused="brood serves WSGI apps only, which are modifier1 0 (uWSGI answers "
           "every request with an error for a plugin it has not loaded)"),
    Option("http-socket-modifier2", "workers", "accepted for uWSGI compatibility, no "
           "effect: uWSGI's Python plugin does not read it either", kind="int", metavar="N",
           high=255),
    Option("processes", "workers", "number of worker processes", kind="int", default=1,
           short="p", aliases=("workers",), metavar="N", high=MAX_WORKERS),
    Option("threads", "workers", "threads per worker", kind="int", default=1, metavar="N",
           high=4096),
    Option("enable-threads", "workers", "accepted for uWSGI compatibility, no effect: threads "
           "an app starts always run in brood workers (plain CPython processes)", kind="bool",
           short="T"),
    Option("wsgi-file", "workers", "load the WSGI app from a .py file", aliases=("file",),
           metavar="FILE"),
    Option("module", "workers", "load the WSGI app from a module (pkg.mod or pkg.mod:callable)",
           short="w", aliases=("wsgi",), metavar="MODULE"),
    Option("callable", "workers", "name of the WSGI callable in the module or file",
           default="application", metavar="NAME"),
    Option("lazy-apps", "workers", "load the app in each worker instead of once in the master",
           kind="bool"),
    Option("lazy", "workers", "load the app in each worker and reload workers on every reload",
           kind="bool"),
    # uWSGI's python plugin: more apps, the process the apps see (brood.workers.loader,
    # brood.workers.mount)
    Option("mount", "workers", "also load APP (a .py/.wsgi file or module:callable) for "
           "requests whose SCRIPT_NAME is MOUNTPOINT (see --manage-script-name)",
           multi=True, metavar="MOUNTPOINT=APP"),
    Option("manage-script-name", "workers", "pick the --mount app by the longest "
           "mountpoint starting PATH_INFO, and move that part of PATH_INFO to SCRIPT_NAME",
           kind="bool"),
    Option("no-default-app", "workers", "a request whose SCRIPT_NAME is no app's "
           "mountpoint gets a 500 instead of going to the first app loaded", kind="bool"),
    Option("pyargv", "workers", "the apps' sys.argv: 'uwsgi' then these words (split at "
           "spaces and tabs)", metavar="ARGS"),
    Option("pyimport", "workers", "import MODULE (or a .py file) before loading the app: "
           "in the master, or in each worker with --lazy-apps (a failure is said, the "
           "start goes on)", multi=True, metavar="MODULE",
           aliases=("py-import", "python-import", "import")),
    Option("shared-import", "workers", "import MODULE (or a .py file) in the master "
           "before forking, also with --lazy-apps", multi=True, metavar="MODULE",
           aliases=("shared-pyimport", "shared-py-import", "shared-python-import")),
    Option("py-sys-executable", "workers", "the apps' sys.executable", metavar="PATH",
           aliases=("py-executable",)),
    Option("wsgi-disable-file-wrapper", "workers", "no wsgi.file_wrapper in the environ",
           kind="bool"),
    Option("wsgi-env-behaviour", "workers", "accepted for uWSGI compatibility, no effect: "
           "every request gets a new environ dict (uWSGI's holy; its default, cheat, "
           "reuses one dict, emptied after each request)", metavar="cheat|holy",
           choices=("cheat", "holy"), aliases=("wsgi-env-behavior",)),
    Option("py-call-osafterfork", "workers", "accepted for uWSGI compatibility, no "
           "effect: brood forks with os.fork, which always runs the os.register_at_fork "
           "hooks (and Python's own after-fork work) in its children", kind="bool"),
    Option("py-call-uwsgi-fork-hooks", "workers", "accepted for uWSGI compatibility, no "
           "effect: the os.register_at_fork hooks always run around brood's forks",
           kind="bool"),
    Option("harakiri", "workers", "kill a worker stuck on one request longer than N seconds (0 = off)",
           kind="int", default=0, short="t", metavar="SECONDS"),
    Option("harakiri-verbose", "workers", "when harakiri kills a worker, log the requests "
           "it was serving (address, method, URI, start) and its current syscall",
           kind="bool"),
    Option("max-requests", "workers", "recycle a worker after N requests (0 = off)", kind="int",
           default=0, short="R", metavar="N"),
    Option("max-requests-delta", "workers", "add (worker id - 1) * N to each worker's "
           "--max-requests, so that they do not all recycle at once", kind="int", default=0,
           metavar="N"),
    Option("min-worker-lifetime", "workers", "seconds a worker runs before --max-requests "
           "or --reload-on-rss may recycle it (as uWSGI: default 60; a pool that recycles "
           "faster spends its time forking)", kind="int", default=60, metavar="SECONDS"),
    Option("max-worker-lifetime", "workers", "recycle a worker (gracefully) once it has run "
           "this many seconds (0 = off)", kind="int", default=0, metavar="SECONDS"),
    Option("max-worker-lifetime-delta", "workers", "add (worker id - 1) * N seconds to each "
           "worker's --max-worker-lifetime", kind="int", default=0, metavar="N"),
    Option("memory-report", "workers", "read each worker's memory after every request: "
           "the stats (uwsgitop's RSS/VSZ) and the start of each request line show it",
           kind="bool"),
    Option("reload-on-rss", "workers", "recycle a worker after its request if RSS exceeds MB (0 = off)",
           kind="int", default=0, metavar="MB"),
    Option("reload-on-as", "workers", "recycle a worker after its request if its address "
           "space (VSZ) is MB or more (0 = off; once it has run --min-worker-lifetime)",
           kind="int", default=0, metavar="MB"),
    Option("reload-on-exception", "workers", "recycle a worker after a request whose app "
           "raised (the client gets its 500; uWSGI's worker exits at once, answering "
           "nothing)", kind="bool"),
    *(Option(f"reload-on-exception-{what}", "workers", "recycle a worker after a request "
             "whose app raised an exception whose message (str(exc)) is TEXT: as uWSGI "
             f"2.0, which compares its {what} filters with the message too", multi=True,
             metavar="TEXT") for what in ("type", "repr")),
    Option("reload-on-exception-value", "workers", "recycle a worker after a request whose "
           "app raised an exception whose message (str(exc)) is TEXT", multi=True,
           metavar="TEXT"),
    Option("evil-reload-on-rss", "workers",
           "SIGKILL a worker (then respawn it) as soon as its RSS reaches MB, even "
           "mid-request; the master checks every second (0 = off)",
           kind="int", default=0, metavar="MB"),
    Option("evil-reload-on-as", "workers",
           "SIGKILL a worker (then respawn it) as soon as its address space reaches MB, "
           "even mid-request; the master checks every second (0 = off)",
           kind="int", default=0, metavar="MB"),
    Option("limit-post", "workers", "largest request body accepted (0 = no limit)",
           kind="size", default=0),
    Option("touch-workers-reload", "workers", "reload the workers alone (gracefully, as "
           "the master FIFO's w) when FILE's mtime changes", multi=True, metavar="FILE"),
    Option("touch-chain-reload", "workers", "chain-reload the workers (one at a time, as "
           "the master FIFO's c) when FILE's mtime changes", multi=True, metavar="FILE"),
    Option("touch-exec", "workers", "run COMMAND (/bin/sh -c, in the background) when "
           "FILE's mtime changes; without a COMMAND, FILE itself is run, as uWSGI does",
           multi=True, metavar="FILE COMMAND"),
    # uWSGI sets these on every stream socket it binds (worker, router, stats), before
    # bind: accepted connections inherit them
    Option("socket-sndbuf", "workers", "SO_SNDBUF of every stream socket brood binds "
           "(the connections accepted on it inherit it; 0 = the system's)", kind="int",
           default=0, metavar="BYTES", high=(1 << 31) - 1),
    Option("socket-rcvbuf", "workers", "SO_RCVBUF of every stream socket brood binds "
           "(the connections accepted on it inherit it; 0 = the system's)", kind="int",
           default=0, metavar="BYTES", high=(1 << 31) - 1),
    Option("socket-send-timeout", "workers", "SO_SNDTIMEO of every TCP socket brood binds, "
           "in seconds: a worker's write to a client that stops reading fails after it "
           "(bare: 1, as uWSGI's flag)", kind="int", optional=True, implicit="1",
           metavar="SECONDS", high=(1 << 31) - 1,
           aliases=("socket-write-timeout", "so-send-timeout", "so-write-timeout")),
    Option("reload-mercy", "workers", "seconds to wait for processes to finish on reload/stop",
           kind="int", default=60, metavar="SECONDS"),
    Option("worker-reload-mercy", "workers", "seconds a worker may take to finish on reload",
           kind="int", default=60, metavar="SECONDS"),
    # uWSGI's static file serving (brood.workers.static) and its response header rules
    Option("static-map", "workers", "serve files under DIR for paths starting with MOUNT "
           "(the rest of the path appended; a mapped file is served as it is), before the "
           "app; GET and HEAD only, a missing file goes to the app", multi=True,
           metavar="MOUNT=DIR"),
    Option("static-map2", "workers", "like --static-map, the whole path appended to DIR",
           multi=True, metavar="MOUNT=DIR"),
    Option("check-static", "workers", "serve DIR + PATH_INFO when that file exists, "
           "before the app", multi=True, metavar="DIR", aliases=("static-check",)),
    Option("static-index", "workers", "a static directory is answered with this file in "
           "it (in order; none: the app answers)", multi=True, metavar="NAME"),
    Option("static-skip-ext", "workers", "never serve static files ending in EXT",
           multi=True, metavar="EXT"),
    Option("static-safe", "workers", "a static file may also resolve (symlinks, ..) under "
           "DIR", multi=True, metavar="DIR"),
    Option("mime-file", "workers", "mime.types file(s) giving static files their "
           "Content-Type (default /etc/mime.types)", multi=True, metavar="FILE",
           aliases=("mimefile",)),
    Option("honour-range", "workers", "answer a static file's Range header (206, 416)",
           kind="bool"),
    Option("static-expires-type", "workers", "Expires: now + SECONDS for static files of "
           "this mime type", multi=True, metavar="TYPE=SECONDS"),
    Option("static-expires-type-mtime", "workers", "Expires: mtime + SECONDS for static "
           "files of this mime type", multi=True, metavar="TYPE=SECONDS"),
    Option("static-expires", "workers", "Expires: now + SECONDS for static files whose "
           "path matches REGEXP", multi=True, metavar="REGEXP SECONDS"),
    Option("static-expires-mtime", "workers", "Expires: mtime + SECONDS for static files "
           "whose path matches REGEXP", multi=True, metavar="REGEXP SECONDS"),
    Option("static-expires-uri", "workers", "Expires: now + SECONDS for static files whose "
           "REQUEST_URI matches REGEXP", multi=True, metavar="REGEXP SECONDS"),
    Option("static-expires-uri-mtime", "workers", "Expires: mtime + SECONDS for static "
           "files whose REQUEST_URI matches REGEXP", multi=True, metavar="REGEXP SECONDS"),
    Option("static-expires-path-info", "workers", "Expires: now + SECONDS for static files "
           "whose PATH_INFO matches REGEXP", multi=True, metavar="REGEXP SECONDS"),
    Option("static-expires-path-info-mtime", "workers", "Expires: mtime + SECONDS for "
           "static files whose PATH_INFO matches REGEXP", multi=True,
           metavar="REGEXP SECONDS"),
    Option("static-gzip-all", "workers", "serve FILE.gz (when it exists) for every static "
           "FILE to clients accepting gzip", kind="bool"),
    Option("static-gzip-dir", "workers", "serve FILE.gz for static files whose path starts "
           "with PREFIX", multi=True, metavar="PREFIX", aliases=("static-gzip-prefix",)),
    Option("static-gzip-ext", "workers", "serve FILE.gz for static files whose name ends "
           "with SUFFIX", multi=True, metavar="SUFFIX", aliases=("static-gzip-suffix",)),
    Option("static-gzip", "workers", "serve FILE.gz for static files whose path matches "
           "REGEXP", multi=True, metavar="REGEXP"),
    Option("file-serve-mode", "workers", "answer a static file with a header naming it "
           "instead of its bytes: x-sendfile (X-Sendfile), x-accel-redirect or nginx "
           "(X-Accel-Redirect)", metavar="MODE"),
    Option("add-header", "workers", "add this header to every answer of the workers "
           "(app and static files)", multi=True, metavar="'NAME: VALUE'"),
    Option("del-header", "workers", "remove headers of this name from every answer of the "
           "workers", multi=True, metavar="NAME", aliases=("rem-header",)),
]
