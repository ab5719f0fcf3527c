"""The logging options, parsed as uWSGI 2.0.21 reads them (brood.logs.spec)."""

from __future__ import annotations

import pytest

from brood.config.model import Config
from brood.config.option import OptionError
from brood.logs.spec import FACILITIES, LogPlan, parse_logger


def test_file_logger_plain_and_keyval() -> None:
    spec = parse_logger("file:/var/log/app.log")
    assert (spec.kind, spec.path, spec.maxsize, spec.backupname, spec.name) == \
        ("file", "/var/log/app.log", 0, None, None)
    spec = parse_logger("file:logfile=/tmp/a.log,maxsize=2048,backupname=/tmp/a.old")
    assert (spec.path, spec.maxsize, spec.backupname) == ("/tmp/a.log", 2048, "/tmp/a.old")


@pytest.mark.parametrize(("value", "says"), [
    ("file", "needs a path"),
    ("file:maxsize=10", "needs logfile=PATH"),
    ("file:logfile=a,colour=red", "invalid keyval syntax"),
    ("file:logfile=a,maxsize=10M", "maxsize must be a number"),
    ("zeromq:tcp://127.0.0.1:5555", "no logger 'zeromq' in brood"),
    ("syslog:app,local9", "unknown syslog facility 'local9'"),
    ("socket:", "needs an address"),
    ("socket:127.0.0.1:99999", "bad port"),
    ("fd:two", "file descriptor number"),
    ("rsyslog:", "HOST[:PORT]"),
])
def test_what_brood_cannot_use_is_refused_naming_it(value: str, says: str) -> None:
    with pytest.raises(OptionError, match="--logger " + value.split(":")[0]) as info:
        parse_logger(value)
    assert says in str(info.value)


def test_named_logger_takes_the_word_before_a_space() -> None:
    spec = parse_logger("app file:/tmp/app.log")
    assert (spec.name, spec.kind, spec.path) == ("app", "file", "/tmp/app.log")
    # not an id (not alphanumeric): the whole value is the logger, as in uWSGI
    spec = parse_logger("file:/tmp/with space.log")
    assert (spec.name, spec.path) == (None, "/tmp/with space.log")


def test_syslog_ident_and_facility() -> None:
    assert (parse_logger("syslog").ident, parse_logger("syslog").facility) == \
        ("uwsgi", FACILITIES["daemon"])
    spec = parse_logger("syslog:myapp,local3")
    assert (spec.ident, spec.facility) == ("myapp", 19)


def test_socket_and_rsyslog_addresses() -> None:
    spec = parse_logger("socket:127.0.0.1:1717,app|")
    assert (spec.address, spec.prefix) == (("127.0.0.1", 1717), "app|")
    assert parse_logger("socket:/run/log.sock").address == "/run/log.sock"
    assert parse_logger("socket:@logs").address == "@logs"
    spec = parse_logger("rsyslog:logs.example:5514,web")
    assert (spec.address, spec.ident) == (("logs.example", 5514), "web")
    assert parse_logger("rsyslog:logs.example").address == ("logs.example", 514)
    assert parse_logger("rsyslog:logs.example").ident.endswith(" uwsgi")


def _plan(**values) -> LogPlan:
    return LogPlan.from_config(Config.from_dict(values))


def test_the_log_master_runs_only_when_an_option_needs_it() -> None:
    assert not _plan().needs_master
    assert not _plan(logto="/tmp/x.log", **{"log-reopen": True, "log-truncate": True,
                                            "log-backupname": "/tmp/x.old"}).needs_master
    for values in ({"logger": ["stdio"]}, {"req-logger": ["stdio"]},
                   {"log-maxsize": 1024}, {"log-master": True}, {"threaded-logger": True},
                   {"touch-logrotate": ["/tmp/t"]}, {"touch-logreopen": ["/tmp/t"]},
                   {"log-drain": ["x"]}, {"log-filter": ["x"]}, {"log-syslog": [""]},
                   {"log-socket": ["127.0.0.1:1717"]}):
        assert _plan(**values).needs_master, values


def test_log_syslog_and_log_socket_are_loggers() -> None:
    plan = _plan(**{"log-syslog": ["", "web,local0"], "log-socket": ["127.0.0.1:1717"]})
    assert [(lg.kind, lg.ident) for lg in plan.loggers[:2]] == [("syslog", "uwsgi"),
                                                                  ("syslog", "web")]
    assert plan.loggers[2].address == ("127.0.0.1", 1717)


def test_routes_need_a_named_logger_and_a_valid_expression() -> None:
    plan = _plan(logger=["app file:/tmp/a.log"], **{"log-route": ["app ^APP"],
                                                    "log-req-route": ["app GET"]})
    assert plan.routes == (("app", "^APP"),) and plan.req_routes == (("app", "GET"),)
    with pytest.raises(OptionError, match="--log-route other x: no --logger is named"):
        _plan(logger=["app file:/tmp/a.log"], **{"log-route": ["other x"]})
    with pytest.raises(OptionError, match="--log-drain .*bad regular expression"):
        _plan(**{"log-drain": ["(unclosed"]})
    with pytest.raises(OptionError, match="expected NAME REGEXP"):
        _plan(logger=["app file:/tmp/a.log"], **{"log-route": ["app"]})


def test_logfile_chmod_is_octal() -> None:
    assert _plan(**{"logfile-chmod": "644"}).chmod == 0o644
    with pytest.raises(OptionError, match="--logfile-chmod 9x"):
        _plan(**{"logfile-chmod": "9x"})


def test_signature_tells_plans_apart_but_not_their_touch_files() -> None:
    a = _plan(logger=["file:/tmp/a.log"], **{"touch-logrotate": ["/tmp/t1"]})
    b = _plan(logger=["file:/tmp/a.log"], **{"touch-logrotate": ["/tmp/t2"]})
    c = _plan(logger=["file:/tmp/b.log"], **{"touch-logrotate": ["/tmp/t1"]})
    assert a.signature() == b.signature() != c.signature()


def test_logto_host_port_is_an_address_not_a_file_name() -> None:
    from brood.logs.spec import udp_address

    assert udp_address("127.0.0.1:1717") == ("127.0.0.1", 1717)
    assert udp_address("logs.example:514") == ("logs.example", 514)
    assert udp_address("[::1]:514") == ("::1", 514)
    for value in ("/var/log/app.log", "app.log", "/var/log/a:1.log", "host:port", None):
        assert udp_address(value) is None, value
    assert _plan(logto="127.0.0.1:1717").logfile is None
    assert _plan(logto="/tmp/x.log").logfile == "/tmp/x.log"
