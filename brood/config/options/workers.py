"""Options read by the workers part: the sockets workers serve and the WSGI app they run."""

from brood.config.option import MAX_WORKERS, Option

OPTIONS: list[Option] = [
    Option("socket", "workers", "serve the uwsgi protocol on ADDR (host:port, /path, @abstract, =N)",
           short="s", aliases=("uwsgi-socket",), multi=True, metavar="ADDR"),
    Option("http-socket", "workers", "serve plain HTTP/1.1 on ADDR", multi=True, metavar="ADDR"),
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
    Option("evil-reload-on-rss", "workers",
           "SIGKILL a worker (then respawn it) as soon as its RSS reaches MB, even "
           "mid-request; the master checks every second (0 = off)",
           kind="int", default=0, metavar="MB"),
    Option("limit-post", "workers", "largest request body accepted (0 = no limit)",
           kind="size", default=0),
    Option("reload-mercy", "workers", "seconds to wait for processes to finish on reload/stop",
           kind="int", default=60, metavar="SECONDS"),
    Option("worker-reload-mercy", "workers", "seconds a worker may take to finish on reload",
           kind="int", default=60, metavar="SECONDS"),
]
