"""Ini files: syntax, magic variables, conditionals, and the real vassal file.

``read_ini`` here is what one file alone assembles to (logic run, values expanded):
brood.config.ini only parses; the load's Assembler does the rest."""

import grp
import os
import pwd
import socket
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brood import __version__
from brood.config.assemble import Assembler
from brood.config.ini import magic_lines, parse_ini, read_ini_file, split_spec
from brood.config.option import OptionError

VASSAL = Path("/work/shared/fixtures/fifo/zerg_dance_vassal.ini")


def write(tmp_path, text, name="app.ini"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def assemble(path, section="uwsgi", environ=None):
    asm = Assembler({} if environ is None else environ)
    asm.read(path if section == "uwsgi" else f"{path}:{section}", "")
    asm.finish()
    return asm


def read_ini(path, section="uwsgi", environ=None):
    """(key, value) of the options one file assembles to ("" for a bare key)."""
    return [(e.key, "" if e.value is None else e.value)
            for e in assemble(path, section, environ).entries if e.option]


def test_basic_syntax_and_repeated_keys(tmp_path):
    path = write(tmp_path, """
# a comment
; another
[uwsgi]
socket = :3031
socket=:3032
processes =   4
master
[other]
socket = :9
""")
    assert read_ini(path) == [
        ("socket", ":3031"), ("socket", ":3032"), ("processes", "4"), ("master", ""),
    ]


def test_bare_key_keeps_none_in_entries(tmp_path):
    path = write(tmp_path, "[uwsgi]\nmaster\nvacuum =\n")
    entries = read_ini_file(path)
    assert [(e.key, e.value, e.line) for e in entries] == [("master", None, 2), ("vacuum", "", 3)]


def test_a_line_ends_at_its_first_nul_as_uwsgi_reads_it(tmp_path):
    """uWSGI 2.0.21: ``foo = a\\0b`` is ``foo = a``, ``fo\\0o = 1`` a bare ``fo``, and
    ``[\\0x]`` a section named nothing (brood kept the NUL: a path with it failed with
    a ValueError traceback)."""
    (tmp_path / "app.ini").write_bytes(b"[uwsgi]\nfoo = a\0b\nfo\0o = 1\nbar = 2\n"
                                       b"[\0x]\nc = 1\n")
    entries = read_ini_file(str(tmp_path / "app.ini"))
    assert [(e.key, e.value) for e in entries] == [("foo", "a"), ("fo", None), ("bar", "2")]


def test_named_section_and_repeated_sections(tmp_path):
    path = write(tmp_path, "[a]\nx = 1\n[uwsgi]\ny = 2\n[a]\nz = 3\n")
    assert read_ini(path, "a") == [("x", "1"), ("z", "3")]


def test_missing_section_is_an_error(tmp_path):
    path = write(tmp_path, "[uwsgi]\nx = 1\n")
    with pytest.raises(OptionError, match=r"has no \[nope\] section"):
        read_ini(path, "nope")


def test_a_byte_order_mark_is_named_when_it_hides_the_section(tmp_path):
    """uWSGI 2.0.21 reads "\\ufeff[uwsgi]" as no section and runs without the file;
    brood refuses it, saying why."""
    path = write(tmp_path, "\ufeff[uwsgi]\r\nprocesses = 2\r\n")
    with pytest.raises(OptionError, match=r"has no \[uwsgi\] section \(it starts with a "
                                          r"byte order mark: save it without one\)$"):
        read_ini(path)


def test_empty_section_is_fine(tmp_path):
    assert read_ini(write(tmp_path, "[uwsgi]\n")) == []


def test_missing_file(tmp_path):
    missing = str(tmp_path / "gone.ini")
    with pytest.raises(OptionError) as info:
        read_ini(missing)
    assert str(info.value) == f"--ini: no such file: {missing}"


def test_split_spec(tmp_path):
    assert split_spec("a/b.ini:prod") == ("a/b.ini", "prod")
    assert split_spec("a/b.ini") == ("a/b.ini", "uwsgi")
    assert split_spec("/x:y/b.ini") == ("/x:y/b.ini", "uwsgi")
    assert split_spec(":prod") == ("", "prod")  # the last file read (the load's)
    assert split_spec("a/b.ini:") == ("a/b.ini:", "uwsgi")


def test_file_magic(tmp_path):
    sub = tmp_path / "site"
    sub.mkdir()
    path = write(sub, "[uwsgi]\nd = %d\np = %p\nn = %n\nc = %c\ns = %s\npct = 100%%\n",
                 name="blog.ini")
    got = dict(read_ini(path))
    assert got["d"] == str(sub) + "/"
    assert got["p"] == str(sub / "blog.ini")
    assert got["n"] == "blog"
    assert got["c"] == "site"
    assert got["s"] == "blog.ini"
    assert got["pct"] == "100%"


@pytest.mark.parametrize("directory, name, e, n", [
    ("d.y", "noext", "", "noext"), ("plain", "noext", "", "noext"),
    ("plain", "two.dots.ini", "ini", "two.dots"), ("d.y", "f.ini", "ini", "f"),
])
def test_extension_and_name_are_the_file_names(tmp_path, directory, name, e, n):
    """As uWSGI 2.0.21 gives them: a name without a dot is all %n and no %e (brood gave
    no %n, and the %e of d.y/noext was y/noext)."""
    (tmp_path / directory).mkdir()
    path = write(tmp_path / directory, "[uwsgi]\ne = %e\nn = %n\n", name=name)
    assert dict(read_ini(path)) == {"e": e, "n": n}


def test_socket_from_file_name(tmp_path):
    path = write(tmp_path, "[uwsgi]\nsocket = /tmp/%n.sock\n", name="shop.ini")
    assert read_ini(path) == [("socket", "/tmp/shop.sock")]


def test_env_magic(tmp_path):
    """An unset variable is kept as written, as uWSGI keeps it."""
    path = write(tmp_path, "[uwsgi]\nchdir = $(HOME)/app\nx = [$(UNSET_ONE)]\n")
    assert read_ini(path, environ={"HOME": "/home/u"}) == [
        ("chdir", "/home/u/app"), ("x", "[$(UNSET_ONE)]")]


def test_placeholders_from_earlier_keys(tmp_path):
    path = write(tmp_path, """[uwsgi]
my_domain = example.org
base = /srv
set-ph = port=8001
chdir = %(base)/%(my_domain)
socket = :%(port)
""")
    assert read_ini(path)[-2:] == [("chdir", "/srv/example.org"), ("socket", ":8001")]
    assert assemble(path).referenced == {"base", "my_domain", "port"}


def test_placeholder_uses_first_value_and_unknown_ones_stay(tmp_path):
    """The first value of a name, as uWSGI looks placeholders up."""
    path = write(tmp_path, "[uwsgi]\na = 1\na = 2\nb = %(a)\nlog-format = %(method) %(uri)\n")
    assert read_ini(path)[2:] == [("b", "1"), ("log-format", "%(method) %(uri)")]


def test_placeholder_of_a_later_line_is_filled(tmp_path):
    """uWSGI expands once the whole config is read: a later line counts."""
    path = write(tmp_path, "[uwsgi]\nb = %(a)\na = 1\n")
    assert read_ini(path)[0] == ("b", "1")


def test_bad_set_placeholder(tmp_path):
    path = write(tmp_path, "[uwsgi]\nset-placeholder = novalue\n")
    with pytest.raises(OptionError, match=r"app.ini:2: set-placeholder wants NAME=VALUE"):
        read_ini(path)


def test_if_exists_and_not_exists(tmp_path):
    there = tmp_path / "flag"
    there.write_text("")
    path = write(tmp_path, f"""[uwsgi]
if-exists = {there}
  a = %(_)
endif =
if-not-exists = {there}
  b = 1
endif
if-exists = {tmp_path}/nothing
  c = 1
endif
if-not-exists = {tmp_path}/nothing
  d = 1
endif
""")
    assert read_ini(path) == [("a", str(there)), ("d", "1")]


def test_if_file_and_if_dir(tmp_path):
    (tmp_path / "f").write_text("")
    path = write(tmp_path, """[uwsgi]
if-file = %df
a = 1
endif
if-dir = %df
b = 1
endif
if-dir = %d
c = 1
endif
if-not-file = %d
d = 1
endif
if-not-dir = %d
e = 1
endif
""")
    assert [k for k, _ in read_ini(path)] == ["a", "c", "d"]


def test_if_env(tmp_path):
    path = write(tmp_path, """[uwsgi]
if-env = MODE
mode = %(_)
endif
if-not-env = MISSING
x = 1
endif
if-env = MISSING
y = 1
endif
""")
    assert read_ini(path, environ={"MODE": "prod"}) == [("mode", "prod"), ("x", "1")]


def test_if_opt(tmp_path):
    path = write(tmp_path, """[uwsgi]
processes = 4
if-opt = processes
a = 1
endif
if-opt = processes=4
b = 1
endif
if-opt = processes=5
c = 1
endif
if-not-opt = threads
d = 1
endif
""")
    assert [k for k, _ in read_ini(path)][1:] == ["a", "b", "d"]


def test_nested_blocks_are_refused_as_uwsgi_cannot_run_them(tmp_path):
    """uWSGI's logic is flat: an opener inside a block stops it ("recursive logic")
    when the block lets it through, and in a false one the first endif ends the
    outer block. brood refuses both, naming the two lines."""
    path = write(tmp_path, """[uwsgi]
if-env = NOPE
  if-env = YES
    a = 1
  endif
  b = 1
endif
""")
    with pytest.raises(OptionError) as info:
        read_ini(path, environ={"YES": "y"})
    assert str(info.value) == (
        f"{path}:3: if-env inside the if-env block opened at {path}:2: uWSGI does not "
        "nest config logic (it stops there too): close the block first")


def test_skipped_lines_are_not_expanded(tmp_path):
    path = write(tmp_path, "[uwsgi]\nif-env = NOPE\nset-ph = broken\nendif\n")
    assert read_ini(path, environ={}) == []


def test_unclosed_if(tmp_path):
    path = write(tmp_path, "[uwsgi]\nx = 1\nif-env = A\ny = 1\n")
    with pytest.raises(OptionError, match=r"app.ini:3: if-env is never closed \(by endif\)$"):
        read_ini(path)


def test_stray_endif(tmp_path):
    path = write(tmp_path, "[uwsgi]\nendif =\n")
    with pytest.raises(OptionError, match=r"app.ini:2: endif without a for or if-\* block open$"):
        read_ini(path)


def test_if_without_argument(tmp_path):
    path = write(tmp_path, "[uwsgi]\nif-exists\nendif\n")
    with pytest.raises(OptionError, match="if-exists needs a value"):
        read_ini(path)


def test_line_without_key(tmp_path):
    with pytest.raises(OptionError, match=r"app.ini:2: line has no option name"):
        read_ini(write(tmp_path, "[uwsgi]\n= 3\n"))


def test_parse_ini_is_pure_text():
    got = parse_ini("[uwsgi]\nsocket = %d%n.sock\n", "/etc/brood/x.ini", "uwsgi")
    assert [(e.key, e.value) for e in got] == [("socket", "/etc/brood/x.sock")]


@pytest.mark.skipif(not VASSAL.exists(), reason="shared fixture not present")
def test_real_zerg_dance_vassal_parses():
    pairs = read_ini(str(VASSAL), environ={})
    keys = [k for k, _ in pairs]
    assert keys.count("master-fifo") == 3
    assert ("wsgi-file", "/tmp/uw/app.py") in pairs
    assert ("zerg", "/tmp/uw/zd/pool.sock") in pairs
    hooks = [v for k, v in pairs if k == "hook-accepting1-once"]
    expected = ["writefifo:/tmp/uw/zd/new.fifo 1"]
    if os.path.exists("/tmp/uw/zd/running.fifo"):
        expected.insert(0, "writefifo:/tmp/uw/zd/running.fifo 2p")
    if os.path.exists("/tmp/uw/zd/sleeping.fifo"):
        expected.insert(0, "writefifo:/tmp/uw/zd/sleeping.fifo Q")
    assert hooks == expected


def test_a_comment_in_a_local_encoding_is_read_a_value_is_refused(tmp_path) -> None:
    """uWSGI reads a GBK or latin-1 comment; a value that is not UTF-8 is refused with
    its line, never read as something else."""
    ok = tmp_path / "gbk.ini"
    ok.write_bytes(b"[uwsgi]\n# \xc4\xe3\xba\xc3 comment\nhttp = :0\n")
    assert read_ini(str(ok)) == [("http", ":0")]
    other = tmp_path / "other.ini"  # a section not read: as uWSGI, no matter
    other.write_bytes(b"[uwsgi]\nhttp = :0\n[other]\nprocname = caf\xe9\n")
    assert read_ini(str(other)) == [("http", ":0")]
    skipped = tmp_path / "skipped.ini"  # nor a block not read
    skipped.write_bytes(b"[uwsgi]\nif-env = NOPE\nprocname = caf\xe9\nendif =\n")
    assert read_ini(str(skipped)) == []
    bad = tmp_path / "value.ini"
    bad.write_bytes(b"[uwsgi]\nhttp = :0\nprocname = caf\xe9\n")
    with pytest.raises(OptionError, match=r"value\.ini:3: not UTF-8 text"):
        read_ini(str(bad))


def test_an_endless_file_is_no_config(tmp_path) -> None:
    """``--ini /dev/zero`` read 6 GB before; a bounded read says what it is."""
    with pytest.raises(OptionError, match="larger than 4 MiB: not a config"):
        read_ini_file("/dev/zero")


def test_uwsgi_magic_variables_beyond_the_file_ones(tmp_path, monkeypatch) -> None:
    """%h %k %u %U %e %0.. %o %x %V and the rest of uWSGI's letters (they were left as
    written: a subscribe-to or procname with %h came out wrong, silently); any other
    letter goes with its % (uWSGI 2.0's table is empty there)."""
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "site.ini").write_text(
        "[uwsgi]\nprocname = %h|%k|%u|%U|%g|%G|%e|%o|%x|%V|%c|%C|%Q\n")
    monkeypatch.chdir(tmp_path)
    [entry] = read_ini_file("conf/site.ini")
    parts = entry.value.split("|")
    assert parts == [socket.gethostname(), str(os.cpu_count()), str(os.getuid()),
                     pwd.getpwuid(os.getuid()).pw_name, str(os.getgid()),
                     grp.getgrgid(os.getgid()).gr_name, "ini", "conf/site.ini",
                     "conf/site.ini:uwsgi", __version__, "conf", "conf", ""]
    components = [p for p in str(conf).split("/") if p]
    (conf / "parts.ini").write_text("[uwsgi]\nchdir = %0/%1\n")
    assert read_ini_file(str(conf / "parts.ini"))[0].value == "/".join(components[:2])


def _magic_by_character(text, table):
    """magic_lines as a character-by-character reading states it."""
    lines, current, number, start, i = [], [], 1, 1, 0
    while i < len(text):
        if text[i] == "%" and i + 1 < len(text):
            number += text[i + 1] == "\n"
            current.append(table.get(text[i + 1], ""))
            i += 2
            continue
        if text[i] == "\n":
            lines.append((start, "".join(current)))
            current, number = [], number + 1
            start = number
        else:
            current.append(text[i])
        i += 1
    return [*lines, (start, "".join(current))] if current else lines


@given(st.text(alphabet=st.sampled_from([*"%\n\r a(d[x", "\0", "\udcff"]), max_size=60))
def test_magic_lines_reads_the_text_as_character_by_character(text):
    """(magic_lines slices the text between its % and line ends: a 4 MiB file took
    seconds read a character at a time)"""
    table = {"d": "/dir/", "%": "%", "(": "%(", "[": "\033"}
    assert magic_lines(text, table) == _magic_by_character(text, table)
