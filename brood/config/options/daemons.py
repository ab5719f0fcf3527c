"""Options of the master's attached daemons (``brood.master_daemons``)."""

from brood.config.option import Option

OPTIONS = [
    Option("attach-daemon", "core", "run COMMAND (/bin/sh -c) beside the workers, started "
           "again when it ends (it must stay in the foreground); stopped with the master",
           multi=True, metavar="COMMAND"),
    Option("attach-control-daemon", "core", "as --attach-daemon, but when COMMAND ends "
           "the instance shuts down gracefully", multi=True, metavar="COMMAND"),
    Option("smart-attach-daemon", "core", "run COMMAND, which daemonizes and writes "
           "PIDFILE; started again when the pid in PIDFILE is gone (FREQ: master cycles "
           "it gets to write it, 10); left running when the master stops",
           multi=True, metavar="PIDFILE[,FREQ] COMMAND"),
    Option("smart-attach-daemon2", "core", "as --smart-attach-daemon, for a COMMAND that "
           "stays in the foreground: the master daemonizes it and writes PIDFILE",
           multi=True, metavar="PIDFILE[,FREQ] COMMAND"),
    Option("attach-daemon2", "core", "an attached daemon by keys: command (cmd, exec), "
           "pidfile, daemonize, control, freq, touch (FILE;FILE), stopsignal, "
           "reloadsignal, stdin, uid, gid (numbers), chdir, max_throttle, notifypid",
           multi=True, metavar="KEY=VALUE,..."),
    Option("daemons-honour-stdin", "core", "attached daemons keep the master's stdin "
           "instead of /dev/null", kind="bool"),
]
