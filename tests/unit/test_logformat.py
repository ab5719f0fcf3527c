"""Log line templates: the shared compiler (``brood.logformat``), the workers'
``--log-format`` variables and which requests get a line (--log-4xx/--log-5xx)."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from brood.config.model import Config
from brood.config.option import OptionError
from brood.logformat import LineFormat, Var, parse_format
from brood.plan import contribute_workers
from brood.workers import reqlog
from brood.workers.reqlog import VARIABLES, Facts, LogRules, compile_format, lookup

TABLE = {"a": lambda r: r["a"], "b": lambda r: r["b"]}


def test_shared_parser_uses_the_callers_table_and_names_the_option():
    assert parse_format("[%(a)] %(b)%(a)", TABLE.get, "x-format") == [
        "[", Var("a"), "] ", Var("b"), Var("a")]
    with pytest.raises(OptionError, match=r"^--x-format: unknown variable %\(c\)$"):
        parse_format("%(a) %(c)", TABLE.get, "x-format")
    with pytest.raises(OptionError, match=r"^--x-format: unclosed %\( at offset 2$"):
        parse_format("a %(b", TABLE.get, "x-format")


def test_shared_line_format_renders_and_optionally_fills_empty_values():
    pieces = parse_format("100% %(a)|%(b)", TABLE.get, "x-format")
    assert LineFormat(pieces, TABLE.get).render({"a": "1", "b": ""}) == "100% 1|"
    dashed = LineFormat(pieces, TABLE.get, empty="-")
    assert dashed.render({"a": "1", "b": ""}) == "100% 1|-"
    assert dashed.names() == {"a", "b"}


def _facts(environ=None, forwarded_for=False, **core) -> Facts:
    worker = SimpleNamespace(pid=4321, id=3, log_x_forwarded_for=forwarded_for)
    values = dict(code=404, sent=100, hsize=60, hcount=2, id=1)
    values.update(core)
    env = {"REQUEST_METHOD": "POST", "REQUEST_URI": "/a?b=1", "PATH_INFO": "/a",
           "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "192.0.2.7", "REMOTE_USER": "bob",
           "HTTP_HOST": "example.com", "HTTP_REFERER": "http://r/", "CONTENT_LENGTH": "12",
           "HTTP_USER_AGENT": "probe/1", "X_CUSTOM": "yes"}
    env.update(environ or {})
    return Facts(worker, SimpleNamespace(**values), env, 1700000000.25, 1700000000.2623456,
                 345, 11)


def test_every_worker_variable_renders():
    fmt = compile_format(" ".join(f"{n}=%({n})" for n in VARIABLES))
    line = fmt.render(_facts())
    fields = dict(part.split("=", 1) for part in line.split(" ") if "=" in part)
    assert (fields["addr"], fields["user"], fields["method"], fields["uri"],
            fields["proto"]) == ("192.0.2.7", "bob", "POST", "/a?b=1", "HTTP/1.1")
    assert (fields["host"], fields["referer"], fields["uagent"]) == (
        "example.com", "http://r/", "probe/1")
    assert (fields["status"], fields["size"], fields["rsize"], fields["hsize"],
            fields["headers"], fields["cl"]) == ("404", "160", "100", "60", "2", "12")
    assert (fields["micros"], fields["msecs"]) == ("12345", "12")
    assert fields["secs"].startswith("0.0123")
    assert (fields["time"], fields["tmsecs"], fields["tmicros"]) == (
        "1700000000", "1700000000250", "1700000000250000")
    assert abs(int(fields["epoch"]) - time.time()) < 60
    assert (fields["pid"], fields["wid"], fields["core"], fields["switches"]) == (
        "4321", "3", "1", "1")
    assert (fields["vars"], fields["pktsize"]) == ("11", "345")
    assert int(fields["rss"]) > 0 and int(fields["vsz"]) >= int(fields["rss"])
    assert int(fields["rssM"]) == int(fields["rss"]) // (1024 * 1024)
    assert time.ctime(1700000000) in line
    assert time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(1700000000)) in line


def test_addr_is_the_forwarded_for_with_log_x_forwarded_for():
    fmt = compile_format("%(addr)")
    sent = {"HTTP_X_FORWARDED_FOR": "203.0.113.7, 10.0.0.1"}
    assert fmt.render(_facts(sent)) == "192.0.2.7"
    assert fmt.render(_facts(sent, forwarded_for=True)) == "203.0.113.7, 10.0.0.1"
    assert fmt.render(_facts(forwarded_for=True)) == "192.0.2.7"  # none sent


def test_request_vars_and_missing_values():
    fmt = compile_format('%(var.X_CUSTOM) %(var.NOPE) "%(referer)" %(user) %(uri)')
    assert fmt.render(_facts()) == 'yes - "http://r/" bob /a?b=1'
    bare = _facts({"HTTP_REFERER": "", "REMOTE_USER": "", "REQUEST_URI": ""})
    assert fmt.render(bare) == 'yes - "-" - /a'  # empty is "-"; uri falls back to PATH_INFO


def test_apache_combined_format():
    fmt = compile_format('%(addr) - %(user) [%(ltime)] "%(method) %(uri) %(proto)" '
                         '%(status) %(size) "%(referer)" "%(uagent)"')
    ltime = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(1700000000))
    assert fmt.render(_facts()) == (f'192.0.2.7 - bob [{ltime}] "POST /a?b=1 HTTP/1.1" '
                                    f'404 160 "http://r/" "probe/1"')


def test_bad_content_length_and_memory_read_once(monkeypatch):
    facts = _facts({"CONTENT_LENGTH": "x"})
    assert VARIABLES["cl"](facts) == "0"
    opened = []
    real_open = open

    def counting_open(path, *args, **kw):
        opened.append(path)
        return real_open(path, *args, **kw)

    monkeypatch.setattr(reqlog, "open", counting_open, raising=False)
    compile_format("%(rss) %(vsz) %(rssM) %(vszM)").render(facts)
    assert opened == ["/proc/self/statm"]


@pytest.mark.parametrize("name", ["bogus", "var.", "metric.x", "modifier2", ""])
def test_other_names_are_logvars_written_as_a_dash(name):
    """As uWSGI reads a --log-format: a name that is no variable is a logvar, which only
    uWSGI's uwsgi module sets: "-" (and a start-up line says so: logvars)."""
    assert lookup(name) is None
    fmt = f"%(status) %({name}) %(method)"
    assert compile_format(fmt).render(_facts()) == "404 - POST"
    assert reqlog.logvars(fmt) == [name]
    assert reqlog.logvars("%(status) %(var.X)") == []


def test_master_refuses_a_bad_log_format_before_forking():
    cfg = Config.from_dict({"log-format": "%(uri) %(nope", "socket": ["127.0.0.1:0"]})
    builder = SimpleNamespace(listen=lambda *a: SimpleNamespace(proto="uwsgi"),
                              plan=SimpleNamespace(), add_prepare=lambda hook: None,
                              add_child=lambda child: pytest.fail("forked a worker"))
    with pytest.raises(OptionError, match=r"^--log-format: unclosed %\( at offset 7$"):
        contribute_workers(cfg, builder)


@pytest.mark.parametrize("status, everything, log_4xx, log_5xx, expected", [
    (200, True, False, False, True),
    (404, True, False, False, True),
    (200, False, True, True, False),
    (399, False, True, True, False),
    (400, False, True, False, True),
    (499, False, True, False, True),
    (404, False, False, True, False),
    (500, False, False, True, True),
    (599, False, False, True, True),
    (503, False, True, False, False),
    (600, False, True, True, False),
    (0, False, True, True, False),  # no answer at all
])
def test_which_statuses_are_logged(status, everything, log_4xx, log_5xx, expected):
    rules = LogRules(everything=everything, log_4xx=log_4xx, log_5xx=log_5xx)
    assert rules.wants(status, 10, 0) is expected


QUIET = LogRules(everything=False)


@pytest.mark.parametrize("rules, size, msecs, sendfile, ioerror, expected", [
    (QUIET, 0, 1000, True, True, False),  # no exception asked for: nothing
    (LogRules(everything=False, zero=True), 0, 0, False, False, True),
    (LogRules(everything=False, zero=True), 1, 0, False, False, False),
    (LogRules(everything=False, slow=100), 5, 100, False, False, True),  # at least N msecs
    (LogRules(everything=False, slow=100), 5, 99, False, False, False),
    (LogRules(everything=False, big=4000), 4000, 0, False, False, True),  # at least N bytes
    (LogRules(everything=False, big=4000), 3999, 0, False, False, False),
    (LogRules(everything=False, sendfile=True), 5, 0, True, False, True),
    (LogRules(everything=False, sendfile=True), 5, 0, False, False, False),
    (LogRules(everything=False, ioerror=True), 5, 0, False, True, True),
    (LogRules(everything=False, ioerror=True), 5, 0, False, False, False),
])
def test_which_requests_the_exceptions_want(rules, size, msecs, sendfile, ioerror, expected):
    assert rules.wants(200, size, msecs, sendfile, ioerror) is expected


def test_rules_from_config_and_whether_any_request_gets_a_line():
    assert LogRules.from_config(Config()) == LogRules() and LogRules().any
    assert not QUIET.any
    rules = LogRules.from_config(Config.from_dict({
        "disable-logging": True, "log-zero": True, "log-slow": "150", "log-big": "4000",
        "log-sendfile": True, "log-ioerror": True}))
    assert rules == LogRules(everything=False, zero=True, slow=150, big=4000,
                             sendfile=True, ioerror=True)
    assert rules.any and LogRules(everything=False, slow=1).any



class _CountingLock:
    def __init__(self) -> None:
        self.taken = 0

    def __enter__(self):
        self.taken += 1

    def __exit__(self, *exc):
        return False


def test_a_long_line_of_a_threaded_worker_takes_its_lock(monkeypatch):
    """Over PIPE_BUF a pipe write may be split and mix with another thread's: such a
    line is written under the worker's lock; short ones and one-thread workers skip it."""
    import select

    written = []
    monkeypatch.setattr(reqlog.os, "write", lambda fd, data: written.append(data))
    lock = _CountingLock()
    reqlog.write_line(b"x" * select.PIPE_BUF, lock)
    assert lock.taken == 0
    reqlog.write_line(b"x" * (select.PIPE_BUF + 1), lock)
    assert lock.taken == 1
    reqlog.write_line(b"x" * 10000, None)
    assert [len(w) for w in written] == [select.PIPE_BUF, select.PIPE_BUF + 1, 10000]
