"""Options of the start-up glue: commands at a phase, waits, umask, more pidfiles
(``brood.master_hooks``)."""

from brood.config.option import Option

_PHASES = (
    ("exec-asap", "first of all, before the log is set up"),
    ("exec-as-root", "before binding and dropping privileges (only when started as root)"),
    ("exec-as-user", "after dropping privileges (only when started as root)"),
    ("exec-pre-app", "before the app is imported"),
    ("exec-post-app", "after the app is imported"),
)

OPTIONS = [
    *(Option(name, "core", f"run COMMAND (/bin/sh -c, waited for) {when}; one that fails "
             "stops the start", multi=True, metavar="COMMAND") for name, when in _PHASES),
    Option("exec-as-user-atexit", "core", "run COMMAND (/bin/sh -c, waited for) at exit "
           "and before each reload", multi=True, metavar="COMMAND"),
    Option("wait-for-fs", "core", "before binding (as root only), wait until PATH exists",
           multi=True, metavar="PATH"),
    Option("wait-for-file", "core", "as --wait-for-fs (uWSGI 2.0.21 takes a directory too)",
           multi=True, metavar="PATH"),
    Option("wait-for-dir", "core", "as --wait-for-fs (uWSGI 2.0.21 takes a file too)",
           multi=True, metavar="PATH"),
    Option("wait-for-mountpoint", "core", "before binding (as root only), wait until PATH "
           "is a mount point", multi=True, metavar="PATH"),
    Option("wait-for-fs-timeout", "core", "seconds the --wait-for-fs/file/dir/mountpoint "
           "waits last before the start stops (0: 60)", kind="int", metavar="SECONDS",
           high=10**7),
    Option("wait-for-socket", "core", "before the app is imported, wait until HOST:PORT "
           "or a unix socket accepts", multi=True, metavar="ADDRESS"),
    Option("wait-for-socket-timeout", "core", "seconds a --wait-for-socket lasts before the "
           "start stops (0: 60)", kind="int", metavar="SECONDS", high=10**7),
    Option("umask", "core", "the process umask (octal), set first", metavar="MODE"),
    Option("pidfile2", "core", "write the master's pid to FILE after dropping privileges",
           metavar="FILE"),
    Option("safe-pidfile", "core", "as --pidfile, written atomically (a temporary file "
           "renamed)", metavar="FILE"),
    Option("safe-pidfile2", "core", "as --pidfile2, written atomically", metavar="FILE"),
]
