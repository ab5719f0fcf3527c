"""The log master: where every process's lines go when an option asks for more than fd 2.

Without such options nothing here runs: each process writes its lines straight to fd 2
(the terminal, or the --logto/--daemonize file), as before. The options of
``brood.config.options.logs`` that need it (--logger, --req-logger, --log-maxsize,
--touch-logrotate, --log-encoder, --log-master...; ``spec.LogPlan.needs_master``) start
a process of its own that reads a pipe per process and writes whole lines to the
loggers:

* ``spec``: the options, checked and frozen (pure);
* ``lines``: lines out of a pipe's bytes, and where each line goes (pure);
* ``encoders``: --log-encoder/--log-req-encoder, the bytes a logger writes for a line
  (pure);
* ``sinks``: files (rotated, reopened), fds, syslog and datagram sockets;
* ``process``: the log master process's loop;
* ``control``: the master's messages to it;
* ``master``: the master's side (start, the children's pipes, reloads, stop).
"""
