"""Config logic (brood.config.logic through the Assembler): for loops, if blocks, their
%(_), the flat blocks of uWSGI 2.0, and the lines that refuse what it cannot mean.

Expected values as uWSGI 2.0.21's --show-config gives them for the same files.
"""

import socket

import pytest

from brood.config import logic
from brood.config.load import load_config
from brood.config.option import OptionError


def write(tmp_path, text, name="app.ini"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def assembled(path, environ=None, argv=()):
    """Every (key, value) the load assembles, logic keys included (as --show-config)."""
    cfg = load_config([*argv, "--ini", path], environ={} if environ is None else environ)
    return [pair for pair in cfg.assembled if pair[0] != "ini"]


def values(path, key, environ=None):
    return [v for k, v in assembled(path, environ) if k == key]


def test_for_repeats_each_key_with_the_item_and_keeps_the_loop_keys(tmp_path):
    path = write(tmp_path, "[uwsgi]\nfor = 1 2\nxx = a%(_)\n%(_)k = v%(_)%(_)\nendfor =\n"
                           "after = %(_)\n")
    assert assembled(path) == [  # (key by key, each for every item, as uWSGI)
        ("for", "1 2"), ("xx", "a1"), ("xx", "a2"), ("%(_)k", "v11"), ("%(_)k", "v22"),
        ("endfor", ""), ("after", "%(_)")]  # (keys keep %(_); none is left after endfor)


def test_for_splits_on_spaces_only_and_an_empty_list_loops_no_time(tmp_path):
    path = write(tmp_path, "[uwsgi]\nfor = a\tb  c\nf = [%(_)]\nendfor =\n"
                           "for =\nempty = 1\nendfor =\nq = 1\n")
    assert assembled(path) == [("for", "a\tb  c"), ("f", "[a\tb]"), ("f", "[c]"),
                               ("endfor", ""), ("for", ""), ("endfor", ""), ("q", "1")]


def test_for_glob_sorted_marked_and_the_pattern_when_nothing_matches(tmp_path):
    (tmp_path / "b.txt").write_text("")
    (tmp_path / "a.txt").write_text("")
    (tmp_path / "sub").mkdir()
    path = write(tmp_path, f"[uwsgi]\nfor-glob = {tmp_path}/*\ng = %(_)\nendfor =\n"
                           f"for-glob = {tmp_path}/*.none\nn = %(_)\nendfor =\n", "x.conf")
    assert values(path, "g") == [f"{tmp_path}/a.txt", f"{tmp_path}/b.txt",
                                 f"{tmp_path}/sub/", f"{tmp_path}/x.conf"]
    assert values(path, "n") == [f"{tmp_path}/*.none"]


@pytest.mark.parametrize("count, expected", [
    ("3", ["1", "2", "3"]), ("0", []), ("2x", ["1", "2"]), ("abc", []), ("-1", []),
    ("", []),
])
def test_for_times_counts_as_atoi_reads(tmp_path, count, expected):
    path = write(tmp_path, f"[uwsgi]\nfor-times = {count}\nt = %(_)\nendfor =\n")
    assert values(path, "t") == expected


def test_for_readline_gives_each_line_without_its_end(tmp_path):
    lines = tmp_path / "lines.txt"
    lines.write_bytes(b"l1\r\n\nl3\n" + b"x" * 1030 + b"\nlast")
    path = write(tmp_path, f"[uwsgi]\nfor-readline = {lines}\nr = [%(_)]\nendfor =\n")
    # (fgets into 1024 bytes: a longer line comes in two pieces)
    assert values(path, "r") == ["[l1]", "[]", "[l3]", f"[{'x' * 1023}]", "[xxxxxxx]",
                                 "[last]"]


def test_for_readline_of_a_missing_file_loops_no_time_with_a_line(tmp_path):
    """uWSGI logs the open error and goes on: so does brood."""
    path = write(tmp_path, f"[uwsgi]\nfor-readline = {tmp_path}/none\nr = 1\nr = 2\n"
                           "endfor =\n")
    cfg = load_config(["--ini", path], environ={})
    assert [k for k, _ in cfg.assembled] == ["ini", "for-readline", "endfor"]
    assert cfg.ignored == (f"for-readline {tmp_path}/none: No such file or directory: no "
                           "lines (as uWSGI)",)


CONDITIONS = """[uwsgi]
if-not-env = NOPE_UNSET
a = [%(_)]
endif =
myopt = 5
if-not-opt = nope
b = [%(_)]
endif =
if-opt = myopt
c = [%(_)]
endif =
if-opt = myopt=5
c2 = [%(_)]
endif =
if-opt = myopt=6
c3 = [%(_)]
endif =
if-reload =
d = [%(_)]
endif =
if-not-reload =
e = [%(_)]
endif =
if-hostname = vm
f = [%(_)]
endif =
if-not-hostname = other
g = [%(_)]
endif =
if-hostname-match = ^v.$
h = [%(_)]
endif =
if-not-hostname-match = ^x
i = [%(_)]
endif =
if-plugin = http
j = [%(_)]
endif =
if-not-plugin = http
k = [%(_)]
endif =
ifplugin = python3
l = [%(_)]
endif =
ifplugin = python
l2 = [%(_)]
endif =
ifenv = HOME
m = [%(_)]
end-if =
ifexists = /
n = [%(_)]
end =
ifdir = /
o = [%(_)]
endif =
if-directory = /
p = [%(_)]
endif =
if-env = HOME=/root
q = [%(_)]
endif =
if-env = HOME=/nope
r = [%(_)]
endif =
if-file = /
s = [%(_)]
endif =
if-not-file = /
t = [%(_)]
endif =
"""


def test_every_condition_and_its_underscore_as_uwsgi_gives_them(tmp_path, monkeypatch):
    """%(_) is the argument, the variable's or option's value, or nothing at all (kept
    as written: if-not-env/if-not-opt of a name unset, if-reload)."""
    monkeypatch.setattr(socket, "gethostname", lambda: "vm")
    got = dict((k, v) for k, v in assembled(write(tmp_path, CONDITIONS), {"HOME": "/root"})
               if len(k) <= 2)
    assert got == {"a": "[%(_)]", "b": "[%(_)]", "c": "[5]", "c2": "[5]",
                   "e": "[%(_)]", "f": "[vm]", "g": "[other]", "h": "[^v.$]", "i": "[^x]",
                   "j": "[http]", "l2": "[python]", "m": "[/root]", "n": "[/]", "o": "[/]",
                   "p": "[/]", "q": "[/root]", "t": "[/]"}


def test_if_reload_is_true_in_a_master_re_executed_by_a_reload(tmp_path):
    path = write(tmp_path, "[uwsgi]\nif-reload =\nr = 1\nendif =\nif-not-reload =\n"
                           "f = 1\nendif =\n")
    assert [k for k, _ in assembled(path, {logic.RELOADS_VAR: "2"}) if len(k) == 1] == ["r"]
    assert [k for k, _ in assembled(path, {logic.RELOADS_VAR: "0"}) if len(k) == 1] == ["f"]


def test_the_reload_variable_is_the_masters():
    from brood.master_env import RELOADS_ENV

    assert logic.RELOADS_VAR == RELOADS_ENV


@pytest.mark.parametrize("name, has", [
    ("python", True), ("http", True), ("corerouter", True), ("fastrouter", True),
    ("rawrouter", True), ("cache", True),
    ("python3", False),  # (uWSGI's python3 plugin calls itself python: false there too)
    ("sslrouter", False), ("router_uwsgi", False), ("zergpool", False), ("ping", False),
])
def test_plugins_brood_has(tmp_path, name, has):
    path = write(tmp_path, f"[uwsgi]\nif-plugin = {name}\nyes = 1\nendif =\n"
                           f"if-not-plugin = {name}\nno = 1\nendif =\n")
    assert [k for k, _ in assembled(path) if k in ("yes", "no")] == ["yes" if has else "no"]


def test_a_condition_is_asked_again_for_each_key(tmp_path):
    """As uWSGI: the block runs its test per key, so a key it lets through counts for
    the next (if-not-opt foo lets foo = 1 in, then foo is set)."""
    path = write(tmp_path, "[uwsgi]\nif-not-opt = foo\nfoo = 1\nbar = 2\nendif =\n")
    assert assembled(path) == [("if-not-opt", "foo"), ("foo", "1"), ("endif", "")]


def test_logic_arguments_are_read_as_written(tmp_path):
    """uWSGI runs logic before any expansion: a condition on $(VAR), @() or %(name)
    tests the text itself (the file's magic %d is in)."""
    path = write(tmp_path, "[uwsgi]\nd = /\nif-exists = %(d)\nx = 1\nendif =\n"
                           "if-exists = $(D)\ny = 1\nendif =\nif-exists = %d\nz = %(_)\nendif =\n")
    assert [k for k, _ in assembled(path, {"D": "/"}) if len(k) == 1] == ["d", "z"]


def test_any_end_ends_any_block_and_end_alone_is_a_key(tmp_path):
    path = write(tmp_path, "[uwsgi]\nfor = a b\nx = %(_)\nendif =\ny = 1\nend = 5\n")
    assert assembled(path) == [("for", "a b"), ("x", "a"), ("x", "b"), ("endif", ""),
                               ("y", "1"), ("end", "5")]


@pytest.mark.parametrize("body, line, opener, at", [
    ("for = a b\nfor = 1 2\ny = %(_)\nendfor =\n", 3, "for", 2),  # uWSGI: recursive logic
    ("if-exists = /\nfor = p q\nw = %(_)\nendfor =\nendif =\n", 3, "for", 2),
    # a false block: uWSGI drops the inner opener and ends the outer block at the
    # first end; the next end is stray: such a file means what it does not say
    ("if-exists = /nonexist\nfor = p q\nw = %(_)\nendfor =\nendif =\n", 3, "for", 2),
    ("if-env = NOPE\nif-env = YES\nendif =\n", 3, "if-env", 2),
])
def test_a_block_inside_another_is_refused(tmp_path, body, line, opener, at):
    path = write(tmp_path, f"[uwsgi]\n{body}")
    with pytest.raises(OptionError) as info:
        assembled(path)
    assert str(info.value).startswith(f"{path}:{line}: {opener} inside the ")
    assert f"block opened at {path}:{at}: uWSGI does not nest config logic" in str(info.value)


@pytest.mark.parametrize("body, message", [
    ("x = 1\nfor = a b\ny = %(_)\n", "app.ini:3: for is never closed (by endfor)"),
    ("if-dir = /\ny = 1\n", "app.ini:2: if-dir is never closed (by endif)"),
    ("x = 1\nendfor =\n", "app.ini:3: endfor without a for or if-* block open"),
    ("end-if =\n", "app.ini:2: end-if without a for or if-* block open"),
    ("if-exists =\nx = 1\nendif =\n", "app.ini:2: if-exists needs a value"),
    ("for-glob =\nx = 1\nendif =\n", "app.ini:2: for-glob needs a value"),
    ("if-hostname-match = (\nx = 1\nendif =\n",
     "app.ini:2: if-hostname-match: not a regular expression: '('"),
])
def test_bad_logic_is_one_line_naming_the_file_and_line(tmp_path, body, message):
    with pytest.raises(OptionError) as info:
        assembled(write(tmp_path, f"[uwsgi]\n{body}"))
    assert str(info.value).startswith(f"{tmp_path}/{message}")
    assert "\n" not in str(info.value)


def test_a_block_may_not_run_past_its_file(tmp_path):
    """uWSGI carries an open block into the next file or option: brood stops there."""
    inner = write(tmp_path, "[uwsgi]\nfor = a b\n", "inner.ini")
    outer = write(tmp_path, f"[uwsgi]\nini = {inner}\nx = %(_)\nendfor =\n", "outer.ini")
    with pytest.raises(OptionError, match=rf"^{inner}:2: for is never closed"):
        assembled(outer)


def test_a_for_can_read_a_file_per_item_whose_keys_run_no_logic(tmp_path):
    """uWSGI reads ini = from inside a block with the block's key: the file's own keys
    come in as they are (its for/endif would be logic uWSGI refuses there)."""
    for name in ("a", "b"):
        write(tmp_path, f"[uwsgi]\nfrom-{name} = {name}\n", f"{name}.ini")
    path = write(tmp_path, "[uwsgi]\nfor = a b\nini = %d%(_).ini\nendfor =\n")
    assert [pair for pair in assembled(path) if pair[0].startswith("from")] == [
        ("from-a", "a"), ("from-b", "b")]
    write(tmp_path, "[uwsgi]\nendif =\n", "c.ini")
    bad = write(tmp_path, "[uwsgi]\nfor = c\nini = %d%(_).ini\nendfor =\n", "bad.ini")
    with pytest.raises(OptionError, match=r"c\.ini:2: endif in a file read from inside the "
                                          r"for block of .*bad\.ini:2: uWSGI runs no"):
        assembled(bad)


def test_logic_on_the_command_line(tmp_path):
    """As uWSGI: --for "a b" --procname-prefix x%(_) --endfor."""
    cfg = load_config(["--for", "a b", "--procname-prefix", "x%(_)", "--endfor",
                       "--if-exists", "/", "--procname", "%(_)", "--endif",
                       "--if-exists", "/nope", "--procname-append", "y", "--end-if"], {})
    assert cfg.assembled == (
        ("for", "a b"), ("procname-prefix", "xa"), ("procname-prefix", "xb"),
        ("endfor", "true"), ("if-exists", "/"), ("procname", "/"), ("endif", "true"),
        ("if-exists", "/nope"), ("end-if", "true"))
    assert (cfg["procname-prefix"], cfg["procname"], cfg["procname-append"]) == ("xb", "/", None)
    with pytest.raises(OptionError, match=r"^--for a b: for is never closed \(by endfor\)$"):
        load_config(["--for", "a b", "--procname", "x"], {})


def test_placeholders_of_a_loop_item_are_expanded_later(tmp_path):
    path = write(tmp_path, "[uwsgi]\nbase = 80\nfor = 1 2\nport = %(base)%(_)\n"
                           "sum = %(_ + 1)\nendfor =\n")
    assert values(path, "port") == ["801", "802"]
    assert values(path, "sum") == ["1", "1"]  # (%(_ + 1) is no %(_): _ is unknown, so 0)


def test_for_readline_of_an_endless_file_is_one_line(tmp_path):
    path = write(tmp_path, "[uwsgi]\nfor-readline = /dev/zero\nr = %(_)\nendfor =\n")
    with pytest.raises(OptionError, match=r"app\.ini:2: for-readline: /dev/zero is larger "
                                          r"than 4 MiB: no list of lines$"):
        assembled(path)


def test_a_loop_of_more_keys_than_a_config_may_have_is_refused_before_counting(tmp_path):
    """uWSGI adds them until the memory runs out; brood says so on one line."""
    path = write(tmp_path, "[uwsgi]\nfor-times = 10000000\nt = %(_)\nendfor =\n")
    with pytest.raises(OptionError, match=r"app\.ini:2: for-times: 10000000 times is more "
                                          r"than the 100000 keys a config may have$"):
        assembled(path)
    lines = tmp_path / "lines.txt"
    lines.write_bytes(b"\n" * (logic.MAX_KEYS + 1))
    path = write(tmp_path, f"[uwsgi]\nfor-readline = {lines}\nr = %(_)\nendfor =\n")
    with pytest.raises(OptionError, match=r"app\.ini:2: for-readline: more items than the "
                                          r"100000 keys a config may have$"):
        assembled(path)


def test_keys_that_keep_coming_stop_at_the_most_a_config_may_have(tmp_path):
    path = write(tmp_path, "[uwsgi]\nfor-times = 60000\na = %(_)\nb = %(_)\nendfor =\n")
    with pytest.raises(OptionError, match=r"app\.ini:4: more than 100000 keys in one "
                                          r"config \(a loop or include"):
        assembled(path)
    big = write(tmp_path, "[uwsgi]\nbig = " + "x" * (1 << 20) + "\n", "big.ini")
    path = write(tmp_path, f"[uwsgi]\nfor-times = 100\ninclude = {big}\nendfor =\n")
    with pytest.raises(OptionError, match=r"big\.ini:2: more than 64 MiB of keys and values"):
        assembled(path)


def test_values_that_double_each_other_stop_at_the_most_text_a_config_may_have(tmp_path):
    doubling = "".join(f"a{n + 1} = %(a{n})%(a{n})\n" for n in range(9))
    path = write(tmp_path, f"[uwsgi]\na0 = {'x' * 1000}\n{doubling}for-times = 200\n"
                           "v = %(a9)\nendfor =\n")
    with pytest.raises(OptionError, match=r"app\.ini:13: more than 64 MiB of keys and "
                                          r"values in one config"):
        assembled(path)
