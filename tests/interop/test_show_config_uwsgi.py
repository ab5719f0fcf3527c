"""The same config files through real uWSGI and brood: ``--show-config`` must print the
same assembled config, line for line (placeholder math, @() sources, for/if logic,
include/inherit/:section, magic variables, the expansion order, command-line logic, the
ini syntax's corners, UWSGI_* variables in the environment's order).

uWSGI prints the block on its log before it starts: it is read up to ``;end of
configuration`` and then stopped with SIGINT (SIGTERM would reload it). brood prints it
and then stops by itself (the files give it nothing to serve). Left out on purpose:
what differs by design (``%V`` the version, ``%b`` the binary, ``%t``/``%T`` the clock,
``%x``, brood's stricter refusals: tests/unit/test_config_*.py).
"""

from __future__ import annotations

import http.server
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from _broodkit import stop_session
from _interop import HELLO_APP, need_uwsgi

pytestmark = pytest.mark.interop

BEGIN = ";uWSGI instance configuration"
END = ";end of configuration"
# brood has these built in; uWSGI loads them so that if-plugin means the same on both
PLUGINS = "[uwsgi]\nplugins = python3,http,fastrouter,rawrouter,cache\n"

FILES = {
    "math.ini": """[uwsgi]
foo = 17
bar = 30
total = %(foo + bar + 3 * 2)
k = %(%k * 3)
inc = %(foo ++)
dec = %(foo --)
cat = %(foo bar ++)
div0 = %(foo / 0)
nonnum = %(foo + abc)
unk = %(nope + 1)
neg = %(3 - 10)
ndiv = %(neg / 2)
nospace = %(foo*2)
lead = %(+ 5)
trail = %(5 +)
twice = %(5 + + 2)
spaced = %( foo )
hex = %(0x10 + 1)
big = 9223372036854775807
wrap = %(big + 1)
clamp = %(99999999999999999999 + 0)
comment = 4 ; a comment
after-comment = %(comment + 1)
a(b) = P
paren = %(a(b))
empty = [%()] [$()] [@()]
self = %(self)b
late = %(later)
later = 9
""",
    "logic.ini": PLUGINS + """for = 1 2
xx = a%(_)
%(_)k = v%(_)%(_)
endfor =
after = %(_)
for =
none = 1
endfor =
for = a\tb  c
tok = [%(_)]
end-for =
for-glob = %dglob/*
g = %(_)
endfor =
for-glob = %dglob/*.none
g2 = %(_)
endfor =
for-times = 3
t = %(_)
endfor =
for-times = 2x
t2 = %(_)
endfor =
for-readline = %dlines.txt
r = [%(_)]
endfor =
for = x y
closed-by = %(_)
endif =
end = not-a-block
if-exists = %d
e = %(_)
endif =
ifexists = %dnothing
e2 = 1
end =
if-not-exists = %dnothing
e3 = %(_)
end-if =
if-file = %dlines.txt
f = %(_)
endif =
if-dir = %dglob
d = %(_)
endif =
ifdir = %dlines.txt
d2 = 1
endif =
if-directory = %dglob
d3 = 1
endif =
if-env = HOME
env-value = %(_)
endif =
ifenv = CFG_MODE=prod
mode = %(_)
endif =
if-not-env = NOPE_UNSET
notenv = %(_)
endif =
myopt = 5
if-opt = myopt=5
opt = %(_)
endif =
if-not-opt = myopt
notopt = 1
endif =
if-not-opt = grows
grows = 1
grows-too = 1
endif =
if-reload =
on-reload = 1
endif =
if-not-reload =
first-start = %(_)
endif =
if-hostname = %h
host = %(_)
endif =
if-not-hostname = surely-not-this-one
nothost = %(_)
endif =
if-hostname-match = ^.
hostre = %(_)
endif =
if-not-hostname-match = ^surely-not
nothostre = 1
endif =
if-plugin = http
plugin-found = %(_)
endif =
ifplugin = python3
has-python3 = 1
endif =
if-plugin = python
has-python = 1
endif =
if-not-plugin = zergpool
no-zergpool = 1
endif =
if-exists = %(foo)
as-written = 1
endif =
""",
    "sources.ini": """[uwsgi]
foo = 1
hostname = @(%dhostname.txt)
two = [@(%dtwo.txt)]
crlf = [@(%dcrlf.txt)]
nul = [@(%dnul.txt)]
inner = [@(%dinner.txt)]
ex = @(exec://echo hi there)
ex2 = [@(exec://printf "a\\n\\n")]
ex3 = @(exec://echo $(echo nested))
ex4 = @(exec://echo \\(x\\))
include = %dfd.ini
over-http = [@(http://127.0.0.1:$(CFG_PORT)/value)]
envu = $(NOPE_UNSET)x
homedir = $(HOME)
dir = @($(CFG_DIR)/hostname.txt)
nest = $(CFG_NEST)
nest2 = x$(CFG_NEST)
viaph = %(homedir)
""",
    "magic.ini": """[uwsgi]
m = %d|%p|%s|%n|%c|%e|%o|%i|%j|%0|%1|%h|%k|%u|%U|%g|%G|%v|%%|%(|%[|[%Q]|[%]
caps = %D|%P|%S|%N|%C|%E|%O|%I|%J
joined = 100%
next = 1
include = %dsub/inner.ini
ini = :other
[other]
sec = other-%n-%N
""",
    "sub/inner.ini": """[uwsgi]
inner = %n %N %d %D %o %O
[other]
sec = inner-%n-%N
""",
    "templates.ini": """[uwsgi]
first = F
inherit = %(tdir)/tpl.ini
mid = %(base)
include = %dbase.ini
last = %(shared)
tdir = %d
""",
    "tpl.ini": """[uwsgi]
x = %(first)
y = $(HOME)
z = @(%dhostname.txt)
w = %n-%N
for = 1 2
v = %(_)
endfor =
include = %dbase.ini
""",
    "base.ini": """[uwsgi]
base = 1
shared = from-base
[other]
sec = base-%n
""",
    "sets.ini": """[uwsgi]
set-ph = a=$(HOME)
b = %(a)
set-placeholder = c=%(b)x
d = %(c)
e = $(HOME)
f = %(e)
x = [%(procname)] [%(vacuum)] [%(myvar)]
vacuum
""",
    "syntax.ini": """# a comment before any section
[uwsgi]
a = 1 ; not a comment
b = "quoted value"
c = 'single'
d =
e=
  f  =   spaced\t
key with spaces = x
g = a = b
 # indented comment
; comment
h = #not a comment
crlf = 1\r
nul = a\0b
fo\0o = 1
joined = 1%
2
set = processes = 3
set-ph = ph = 1
ph-value = [%(ph)] [%(ph )]
set = y=
[other]
z = 1
[uwsgi]
i = second [uwsgi]
[ uwsgi ]
j = not this one
[\0x]
k = nor this one
""",
    "d.y/noext": "[uwsgi]\nm = %e|%n|%s|%c|%E|%N\n",
    "lines.txt": "l1\r\n\nl3\n" + "x" * 1030 + "\nlast",
    "hostname.txt": "vm\n",
    "two.txt": "a\n\n",
    "crlf.txt": "a\r\n",
    "nul.txt": "x\0y\n",
    "inner.txt": "v=%(foo)$(HOME)\n",
    "fd.txt": "from a descriptor\n",
    "glob/b.txt": "",
    "glob/a.txt": "",
    "glob/sub/.keep": "",
}

CASES = {
    "math": ["--ini", "math.ini"],
    "logic": ["--ini", "logic.ini"],
    "sources": ["--ini", "sources.ini"],
    "magic": ["--ini", "magic.ini"],
    "templates": ["--ini", "templates.ini", "--procname", "zz"],
    "sets": ["--set", "myvar=$(HOME)", "--set", "procname=$(HOME)%(b)", "--ini",
             "sets.ini"],
    "command-line logic": ["--for", "a b", "--procname-prefix", "x%(_)", "--endfor",
                           "--if-exists", "/", "--procname", "%(_)", "--endif",
                           "--if-exists", "/nope", "--procname-append", "y", "--end-if",
                           "--for-times", "2", "--ini", "base.ini", "--endfor", "-M"],
    "positional files come last": ["base.ini", "-L", "--ini", "base.ini:other"],
    "ini syntax": ["--ini", "syntax.ini", "--set", "x = 1", "--ini", "d.y/noext"],
    "environment order": ["-p", "2"],
}
# UWSGI_* variables of a case, after the others, in this order (uWSGI walks environ)
CASE_ENV = {
    "environment order": {"UWSGI_PROCESSES": "3", "UWSGI_FOO_BAR": "x",
                          "UWSGI_INI": "base.ini", "UWSGI_MASTER": ""},
}


class _Value(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"over http\n" if self.path == "/value" else b""
        self.send_response(200 if body else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("show-config")
    for name, text in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Value)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _environ(root: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("UWSGI_", "BROOD_", "CFG_"))}
    env.update(CFG_MODE="prod", CFG_DIR=str(root), CFG_NEST="$(CFG_MODE)", CFG_PORT=str(port),
               UWSGI_HTTPPORT=str(port))  # (a UWSGI_* variable: an option on both sides)
    return env


def _block(lines: list[str]) -> list[str]:
    if BEGIN not in lines or END not in lines:
        raise AssertionError("no --show-config block in:\n" + "\n".join(lines[-30:]))
    return lines[lines.index(BEGIN) + 1:lines.index(END)]


def _read_until_end(proc: subprocess.Popen, deadline: float) -> list[str]:
    """stderr lines up to the end of the block (or the process's end)."""
    assert proc.stderr is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stderr, selectors.EVENT_READ)
    data = b""
    while END.encode() not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not selector.select(left):
            raise AssertionError("uwsgi printed no config in time:\n" + data.decode())
        chunk = os.read(proc.stderr.fileno(), 65536)
        if not chunk:
            break
        data += chunk
    selector.close()
    return data.decode("utf-8", "replace").splitlines()


def uwsgi_config(args: list[str], root: Path, env: dict[str, str], fd: int) -> list[str]:
    os.lseek(fd, 0, os.SEEK_SET)
    proc = subprocess.Popen([need_uwsgi(), *args, "--show-config"], cwd=root, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True, pass_fds=(fd,))
    try:
        return _block(_read_until_end(proc, time.monotonic() + 30))
    finally:
        stop_session(proc, signal.SIGINT, 10)
        assert proc.stderr is not None
        proc.stderr.close()


def brood_config(args: list[str], root: Path, env: dict[str, str], fd: int) -> list[str]:
    os.lseek(fd, 0, os.SEEK_SET)
    proc = subprocess.Popen([sys.executable, "-m", "brood", *args, "--show-config"],
                            cwd=root, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True, pass_fds=(fd,))
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        stop_session(proc, signal.SIGINT, 10)
    lines = err.decode("utf-8", "replace").splitlines()
    # nothing to serve: brood prints the config, then stops by itself
    assert proc.returncode == 1 and lines[-1].startswith("brood: nothing to do"), lines[-5:]
    return _block(lines)


@pytest.fixture
def descriptor(config_dir):
    """A descriptor both programs inherit under the same number, for @(fd://N)."""
    root, _ = config_dir
    fd = os.open(root / "fd.txt", os.O_RDONLY)
    (root / "fd.ini").write_text(f"[uwsgi]\nfd = [@(fd://{fd})]\n")
    try:
        yield fd
    finally:
        os.close(fd)


@pytest.mark.parametrize("case", list(CASES))
def test_brood_assembles_the_config_uwsgi_assembles(config_dir, descriptor, case) -> None:
    need_uwsgi("python3", "http", "fastrouter", "rawrouter", "cache")
    root, port = config_dir
    env = {**_environ(root, port), **CASE_ENV.get(case, {})}
    expected = uwsgi_config(CASES[case], root, env, descriptor)
    got = brood_config(CASES[case], root, env, descriptor)
    assert got == expected


def test_the_cases_mean_something(config_dir, descriptor) -> None:
    """A few values the comparison above rests on, read from brood alone (so a uWSGI
    that printed nothing useful would not make the test pass vacuously)."""
    root, port = config_dir
    lines = brood_config(["--ini", "math.ini"], root, _environ(root, port), descriptor)
    got = dict(line.split(" = ", 1) for line in lines if " = " in line)
    assert (got["total"], got["cat"], got["late"]) == ("100", "1731", "9")
    assert int(got["k"]) == 3 * (os.cpu_count() or 1)


def test_the_config_goes_to_the_log(tmp_path) -> None:
    """uWSGI 2.0.21 writes the block on its log: with --logto, into that file (checked
    there by hand: nothing of it on stderr). brood alone, so this runs without uWSGI."""
    ini = tmp_path / "a.ini"
    ini.write_text("[uwsgi]\nfoo = 17\ntotal = %(foo + 3)\n")
    log = tmp_path / "brood.log"
    proc = subprocess.run([sys.executable, "-m", "brood", "--ini", str(ini), "--show-config",
                           "--logto", str(log)], capture_output=True, timeout=60,
                          stdin=subprocess.DEVNULL, start_new_session=True)
    assert proc.returncode == 1
    assert BEGIN.encode() not in proc.stderr
    assert _block(log.read_text().splitlines()) == [
        "[uwsgi]", f"ini = {ini}", "foo = 17", "total = 20", "show-config = true",
        f"logto = {log}"]


def test_if_reload_is_true_in_the_master_a_reload_re_executes(start_brood, tmp_path) -> None:
    """if-reload reads the reload as uWSGI's does: the re-executed master reads the
    same file with the other branch (its --show-config block says which)."""
    ini = tmp_path / "r.ini"
    ini.write_text(f"[uwsgi]\nhttp-socket = 127.0.0.1:0\nwsgi-file = {HELLO_APP}\n"
                   "show-config = true\nif-reload =\nreloaded = yes\nendif =\n"
                   "if-not-reload =\nfirst-start = yes\nendif =\n")
    brood = start_brood("--ini", str(ini))
    assert "first-start = yes" in brood.log() and "reloaded = yes" not in brood.log()
    brood.send_signal(signal.SIGHUP)
    brood.wait_ready(count=2)
    second = brood.log().rpartition(BEGIN)[2]
    assert "reloaded = yes" in second and "first-start = yes" not in second
