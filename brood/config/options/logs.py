"""Options read by the log master (``brood.logs``): where lines go, and how log files are
rotated and reopened. --logto, --daemonize and the request-line options are core's."""

from brood.config.option import Option

OPTIONS: list[Option] = [
    Option("logger", "logging", "send every log line to this logger (repeat for several): "
           "file:PATH (or file:logfile=PATH,maxsize=N,backupname=NAME), stdio, fd:N, "
           "syslog[:IDENT[,FACILITY]], rsyslog:HOST[:PORT][,IDENT], socket:ADDR[,PREFIX] "
           "(UDP host:port, or a unix datagram socket); 'NAME TYPE:ARG' names one for "
           "--log-route; starts the log master", multi=True, metavar="[NAME ]TYPE[:ARG]"),
    Option("req-logger", "logging", "send request lines to this logger instead (same "
           "types as --logger); starts the log master", multi=True, aliases=("logger-req",),
           metavar="TYPE[:ARG]"),
    Option("log-syslog", "logging", "log to syslog (--logger syslog[:IDENT[,FACILITY]])",
           multi=True, optional=True, implicit="", metavar="IDENT[,FACILITY]"),
    Option("log-socket", "logging", "log to a datagram socket (--logger socket:ADDR)",
           multi=True, metavar="ADDR"),
    Option("log-route", "logging", "send the lines matching REGEXP to the logger named "
           "NAME only", multi=True, metavar="NAME REGEXP"),
    Option("log-req-route", "logging", "send the request lines matching REGEXP to the "
           "logger named NAME only", multi=True, metavar="NAME REGEXP"),
    Option("log-drain", "logging", "drop the log lines matching REGEXP", multi=True,
           metavar="REGEXP"),
    Option("log-filter", "logging", "keep only the log lines matching one of these REGEXPs",
           multi=True, metavar="REGEXP"),
    Option("log-encoder", "logging", "pass each log line through this encoder (repeat to "
           "chain them, in order): prefix STR, suffix STR, nl, format TEMPLATE, json "
           "TEMPLATE (${msg} ${msgnl} ${unix} ${micros} ${millis} ${strftime:FORMAT}; json "
           "escapes the line), gzip, compress; NAME:LOGGER encodes for the --logger named "
           "LOGGER only; written as encoded (after format/json no newline unless ${msgnl} or "
           "an nl encoder: as uWSGI's); starts the log master", multi=True,
           metavar="NAME[:LOGGER] [ARGS]"),
    Option("log-req-encoder", "logging", "the same for the request lines of a --req-logger; "
           "starts the log master", multi=True, metavar="NAME[:LOGGER] [ARGS]"),
    Option("loggers-list", "logging", "print the logger types brood has, then start as "
           "usual (as uWSGI)", kind="bool", aliases=("logger-list",)),
    Option("log-master", "logging", "write every process's output through the log master "
           "process (implied by the options that need it)", kind="bool"),
    Option("threaded-logger", "logging", "accepted for uWSGI compatibility: brood's log "
           "master is a process of its own; starts it", kind="bool"),
    Option("log-maxsize", "logging", "rotate the --logto/--daemonize file once it is bigger "
           "than this (starts the log master)", kind="size", default=0, metavar="BYTES"),
    Option("log-backupname", "logging", "name the rotated file NAME (default: the log "
           "file's name plus .EPOCH)", metavar="NAME"),
    Option("log-reopen", "logging", "reopen the --logto/--daemonize file on each reload",
           kind="bool"),
    Option("log-truncate", "logging", "empty the --logto/--daemonize file at start-up",
           kind="bool"),
    Option("touch-logrotate", "logging", "rotate the log file when FILE's mtime changes "
           "(starts the log master)", multi=True, metavar="FILE"),
    Option("touch-logreopen", "logging", "reopen the log file when FILE's mtime changes "
           "(starts the log master)", multi=True, metavar="FILE"),
    Option("log-date", "logging", "prefix brood's own log lines with this strftime format "
           "(bare, true, yes, on or 1: the default date)", optional=True, implicit="true",
           aliases=("logdate",), metavar="FORMAT"),
    Option("log-prefix", "logging", "prefix brood's own log lines with STR instead of the "
           "date", optional=True, implicit="", metavar="STR"),
    Option("logfile-chmod", "logging", "mode of the log files brood creates (octal, e.g. "
           "644)", metavar="MODE"),
    Option("logfile-chown", "logging", "give the log files brood creates to --uid/--gid",
           kind="bool"),
]
