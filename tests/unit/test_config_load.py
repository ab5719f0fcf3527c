"""load_config with ini files: applied in place, includes, loops, typed values, errors."""

import pytest

from brood.config.load import load_config
from brood.config.option import OptionError


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_ini_applied_where_it_appears(tmp_path):
    ini = write(tmp_path, "a.ini", "[uwsgi]\nprocesses = 4\nsocket = :2\n")
    cfg = load_config(["-p", "2", "-s", ":1", "--ini", ini, "-s", ":3"])
    assert cfg["processes"] == 4
    assert cfg["socket"] == [":1", ":2", ":3"]
    cfg = load_config(["--ini", ini, "-p", "8"])
    assert cfg["processes"] == 8


def test_positional_ini_and_section(tmp_path):
    ini = write(tmp_path, "a.ini", "[uwsgi]\nprocesses = 2\n[prod]\nprocesses = 9\n")
    assert load_config([ini])["processes"] == 2
    assert load_config([f"{ini}:prod"])["processes"] == 9
    assert load_config(["--ini", f"{ini}:prod"])["processes"] == 9


def test_positional_existing_file_without_ini_suffix(tmp_path):
    conf = write(tmp_path, "site.conf", "[uwsgi]\nthreads = 3\n")
    assert load_config([conf])["threads"] == 3


def test_ini_values_are_typed_and_bare_bool_is_true(tmp_path):
    ini = write(tmp_path, "a.ini", "[uwsgi]\nmaster\nvacuum = false\nbuffer-size = 32k\n")
    cfg = load_config(["--ini", ini])
    assert cfg["master"] is True
    assert cfg["vacuum"] is False
    assert cfg["buffer-size"] == 32768


def test_bare_key_needing_value(tmp_path):
    ini = write(tmp_path, "a.ini", "[uwsgi]\nsocket\n")
    with pytest.raises(OptionError) as info:
        load_config([ini])
    assert str(info.value) == f"{ini}:2: socket needs a value"


def test_bad_value_names_file_and_line(tmp_path):
    ini = write(tmp_path, "a.ini", "[uwsgi]\n\nprocesses = lots\n")
    with pytest.raises(OptionError) as info:
        load_config([ini])
    assert str(info.value) == f"{ini}:3: --processes: expected a whole number, got 'lots'"


def test_unknown_key_in_ini_is_ignored_with_a_line_or_refused_with_strict(tmp_path):
    """uWSGI runs an ini file with keys it does not know (its placeholders): so does
    brood, saying so (with a suggestion); --strict refuses them, as uWSGI's does."""
    ini = write(tmp_path, "a.ini", "[uwsgi]\nproceses = 4\nthunder-lock = true\nprocesses = 2\n")
    cfg = load_config([ini])
    assert cfg["processes"] == 2
    assert cfg.ignored == (
        f"{ini}:2: unknown option --proceses (did you mean --processes?): ignored "
        "(--strict refuses it)",
        f"{ini}:3: unknown option --thunder-lock: ignored (--strict refuses it)")
    assert cfg.with_values(chdir="/").ignored == cfg.ignored  # (--chdir lost them)
    with pytest.raises(OptionError) as info:
        load_config([ini, "--strict"])
    assert str(info.value) == f"{ini}:2: unknown option --proceses (did you mean --processes?)"
    with pytest.raises(OptionError, match="unknown option --proceses"):
        load_config(["--proceses", "4"])  # the command line: a typo, refused as ever


def test_custom_key_used_as_placeholder_is_not_an_error(tmp_path):
    ini = write(tmp_path, "a.ini", "[uwsgi]\nbase_dir = /srv\nchdir = %(base_dir)/app\n")
    cfg = load_config([ini])
    assert cfg["chdir"] == "/srv/app"


def test_plugins_key_is_accepted(tmp_path):
    ini = write(tmp_path, "a.ini", "[uwsgi]\nplugins = python3\nmaster = true\n")
    assert load_config([ini])["master"] is True


def test_include_from_ini(tmp_path):
    inner = write(tmp_path, "inner.ini", "[uwsgi]\nsocket = :2\nprocesses = 3\n")
    outer = write(tmp_path, "outer.ini",
                  "[uwsgi]\nsocket = :1\nini = %dinner.ini\nsocket = :3\nprocesses = 5\n")
    cfg = load_config([outer])
    assert cfg["socket"] == [":1", ":2", ":3"]
    assert cfg["processes"] == 5
    assert cfg.ini_files == (outer, inner)
    assert cfg["ini"] == [outer, inner]


def test_same_file_other_section_is_not_a_loop(tmp_path):
    ini = write(tmp_path, "a.ini", "[uwsgi]\nini = %p:base\nprocesses = 2\n[base]\nthreads = 4\n")
    cfg = load_config([ini])
    assert (cfg["processes"], cfg["threads"]) == (2, 4)


def test_include_loop_is_an_error(tmp_path):
    a = write(tmp_path, "a.ini", "[uwsgi]\nini = %db.ini\n")
    write(tmp_path, "b.ini", "[uwsgi]\nini = %da.ini\n")
    with pytest.raises(OptionError, match=r"^--ini: include loop: .*a\.ini -> .*b\.ini -> .*a\.ini$"):
        load_config([a])


def test_self_include_is_an_error(tmp_path):
    a = write(tmp_path, "a.ini", "[uwsgi]\nini = %p\n")
    with pytest.raises(OptionError, match="include loop"):
        load_config(["--ini", a])


def test_same_file_twice_from_argv_is_fine(tmp_path):
    a = write(tmp_path, "a.ini", "[uwsgi]\nsocket = :1\n")
    assert load_config([a, a])["socket"] == [":1", ":1"]


def test_missing_ini(tmp_path):
    missing = str(tmp_path / "nope.ini")
    with pytest.raises(OptionError) as info:
        load_config(["--ini", missing])
    assert str(info.value) == f"--ini: no such file: {missing}"


def test_unknown_section(tmp_path):
    a = write(tmp_path, "a.ini", "[uwsgi]\n")
    with pytest.raises(OptionError, match=r"has no \[staging\] section"):
        load_config([f"{a}:staging"])


def test_environ_is_passed_to_ini(tmp_path):
    a = write(tmp_path, "a.ini", "[uwsgi]\nchdir = $(APP_DIR)\nif-env = WORKERS\nprocesses = %(_)\nendif\n")
    cfg = load_config([a], environ={"APP_DIR": "/srv/app", "WORKERS": "7"})
    assert (cfg["chdir"], cfg["processes"]) == ("/srv/app", 7)


def test_ordered_keeps_sources_order(tmp_path):
    a = write(tmp_path, "a.ini", "[uwsgi]\nsocket = :2\n")
    cfg = load_config(["-s", ":1", a])
    assert [pair for pair in cfg.ordered() if pair[0] == "socket"] == [("socket", ":1"), ("socket", ":2")]


@pytest.mark.parametrize("argv, message", [
    (["--http-timeout", "-5"], "--http-timeout -5: must be 0 or more"),
    (["--http-processes", "-3"], "--http-processes -3: must be 0 or more"),
    (["--buffer-size", "-5"], "--buffer-size -5: must be 0 or more"),
    (["--http-keepalive=-3"], "--http-keepalive -3: must be 0 or more"),
    # a traceback from listen(2) or an mmap for the spread table before
    (["--listen", "99999999999"], "--listen 99999999999: must be 65535 or less"),
    (["--http-processes", "99999999999"], "--http-processes 99999999999: must be 1024 or less"),
    (["--http-modifier1", "300"], "--http-modifier1 300: must be 255 or less"),
])
def test_numbers_out_of_range_are_refused_naming_the_option(argv, message) -> None:
    with pytest.raises(OptionError) as caught:
        load_config(["--http", ":0", "--http-to", ":9", *argv])
    assert str(caught.value) == message


def test_a_timeout_of_0_is_the_default_as_in_uwsgi() -> None:
    """uWSGI reads 0 as "not set"; brood answered 504 to every request over 0.4 s."""
    from brood.routers.engine import RouterSettings
    from brood.routers.http.settings import HttpSettings

    cfg = load_config(["--http", ":0", "--http-to", ":9", "--http-timeout", "0",
                       "--http-connect-timeout", "0", "--http-headers-timeout", "0"])
    engine = RouterSettings.from_config(cfg, "http")
    assert (engine.timeout, engine.connect_timeout) == (60.0, None)
    assert HttpSettings.from_config(cfg).headers_timeout == 60.0


def test_placeholders_are_the_instances_not_a_files(tmp_path):
    """As uWSGI: a key set in one file is %(key) in the next, set-ph in an included
    file too, and --set-ph/--set on the command line fill a template; a key read only
    by if-opt is no unknown option."""
    a = write(tmp_path, "a.ini", "[uwsgi]\nmyport = 8001\n")
    b = write(tmp_path, "b.ini", "[uwsgi]\nhttp = 127.0.0.1:%(myport)\n")
    cfg = load_config([a, b])
    assert cfg["http"] == ["127.0.0.1:8001"] and cfg.ignored == ()
    inc = write(tmp_path, "inc.ini", "[uwsgi]\nset-ph = other=8002\n")
    c = write(tmp_path, "c.ini", f"[uwsgi]\nini = {inc}\nhttp = :%(other)\n")
    assert load_config([c])["http"] == [":8002"]
    tpl = write(tmp_path, "tpl.ini", "[uwsgi]\nhttp = :%(port)\n")
    assert load_config(["--set-ph", "port=8003", "--ini", tpl])["http"] == [":8003"]
    assert load_config(["--set", "port=8004", "--ini", tpl])["http"] == [":8004"]
    assert load_config(["--set", "processes=3"])["processes"] == 3  # an option: set
    mode = write(tmp_path, "mode.ini", "[uwsgi]\nmode = prod\nif-opt = mode=prod\n"
                                       "processes = 5\nendif =\n")
    cfg = load_config([mode])
    assert cfg["processes"] == 5 and cfg.ignored == ()
    with pytest.raises(OptionError, match="--set-placeholder x: expected NAME=VALUE"):
        load_config(["--set-ph", "x"])


def test_a_uwsgi_option_brood_lacks_stops_the_start_unless_harmless(tmp_path):
    """route/https/static-cache-paths left out would serve what the file meant to refuse (the
    second review: GET /admin answered 200); thunder-lock and the like change nothing
    served and are ignored with a line."""
    for line in ("route = ^/admin break:403 Forbidden", "https = :443,a.crt,a.key",
                 "static_cache_paths = 30", "chroot = /srv"):
        ini = write(tmp_path, "sec.ini", f"[uwsgi]\nhttp-socket = :0\n{line}\n")
        name = line.split(" ")[0].replace("_", "-")
        with pytest.raises(OptionError, match=rf"^{ini}:3: --{name} is a uWSGI option brood "
                                              "does not have"):
            load_config([ini])
    ini = write(tmp_path, "ok.ini", "[uwsgi]\nhttp-socket = :0\nthunder-lock = true\n"
                                    "cpu-affinity = 1\nsingle-interpreter = true\n")
    assert len(load_config([ini]).ignored) == 3


def test_set_of_a_name_no_file_uses_is_refused_under_strict():
    """As uWSGI's strict mode: -S proceses=4 is a typo, not a placeholder."""
    with pytest.raises(OptionError, match=r"^--set: unknown option --proceses \(did you mean"):
        load_config(["--strict", "-S", "proceses=4"])
    assert load_config(["-S", "proceses=4"])["processes"] == 1  # a placeholder otherwise



def test_set_keeps_the_spaces_around_its_equals_sign_as_uwsgi(tmp_path):
    """uWSGI 2.0.21 reads ``set = processes = 3`` as the key ``processes `` (no option:
    one worker) and ``set-ph = ph = 1`` as the placeholder ``ph ``: brood ran 3."""
    ini = write(tmp_path, "set.ini", "[uwsgi]\nset = processes = 3\nset-ph = ph = 1\n"
                                     "v = [%(ph)]\n")
    cfg = load_config([ini], environ={})
    assert cfg["processes"] == 1
    assert ("processes ", " 3") in cfg.assembled and ("ph ", " 1") in cfg.assembled
    assert ("v", "[%(ph)]") in cfg.assembled
    assert cfg.ignored[0] == (f"{ini}:2: unknown option --'processes ' (did you mean "
                              "--processes?): ignored (--strict refuses it)")


def test_placeholders_filled_once_the_whole_load_is_read(tmp_path):
    """As uWSGI: a name given on a later line or after the file on the command line,
    an option given on the command line (%(procname-prefix)), and if-opt seeing a
    command-line option; no 'ignored' line for a key used so."""
    ini = write(tmp_path, "t.ini", "[uwsgi]\nsocket = /tmp/%(project).sock\nproject = x\n"
                                   "procname = %(procname-prefix)w\nif-opt = http-socket\n"
                                   "processes = 3\nendif =\n")
    cfg = load_config(["--procname-prefix", "PRE", "--http-socket", ":1", ini])
    assert cfg["socket"] == ["/tmp/x.sock"] and cfg["procname"] == "PREw"
    assert cfg["processes"] == 3 and cfg.ignored == ()
    tpl = write(tmp_path, "tpl.ini", "[uwsgi]\nhttp-socket = :%(port)\n")
    assert load_config(["--ini", tpl, "--set-ph", "port=8005"])["http-socket"] == [":8005"]


def test_numbers_may_carry_a_trailing_comment_as_uwsgi_reads_them(tmp_path):
    """uWSGI reads numbers with atoi, so ``processes = 4 ; web`` runs there: it does
    here too. Strings keep everything (uWSGI's do), and a number glued to text is
    still refused."""
    ini = write(tmp_path, "a.ini", "[uwsgi]\nprocesses = 4 ; web\nbuffer-size = 64k # heads\n"
                "harakiri = 30\t;\nsocket = /tmp/x.sock ; not a comment\n")
    cfg = load_config([ini])
    assert (cfg["processes"], cfg["buffer-size"], cfg["harakiri"]) == (4, 65536, 30)
    assert cfg["socket"] == ["/tmp/x.sock ; not a comment"]
    bad = write(tmp_path, "b.ini", "[uwsgi]\nprocesses = 4;5\n")
    with pytest.raises(OptionError) as info:
        load_config([bad])
    assert str(info.value) == f"{bad}:2: --processes: expected a whole number, got '4;5'"


def test_uwsgi_variables_are_options_before_the_command_line():
    """As uWSGI: UWSGI_<NAME>=value is --name value, read first (the command line
    overrides it); those uWSGI sets for itself are not options."""
    env = {"UWSGI_PROCESSES": "3", "UWSGI_MASTER": "", "UWSGI_RELOADS": "2",
           "UWSGI_HTTP_SOCKET": "127.0.0.1:0", "UWSGI_PYTHONPATH": "/a", "PATH": "/bin"}
    cfg = load_config([], environ=env)
    assert (cfg["processes"], cfg["master"], cfg["http-socket"]) == (3, True, ["127.0.0.1:0"])
    assert cfg.ignored == ()
    cfg = load_config(["-p", "5", "--pythonpath", "/b"], environ=env)
    assert (cfg["processes"], cfg["pythonpath"]) == (5, ["/a", "/b"])
    cfg = load_config([], environ={"UWSGI_PROCESES": "4"})
    assert cfg.ignored == ("$UWSGI_PROCESES: unknown option --proceses (did you mean "
                           "--processes?): ignored (--strict refuses it)",)
    with pytest.raises(OptionError, match=r"^\$UWSGI_PROCESSES: --processes: "):
        load_config([], environ={"UWSGI_PROCESSES": "four"})


def test_uwsgi_variables_are_read_in_the_environments_order(tmp_path):
    """uWSGI 2.0.21 walks its environ in order (env MASTER PROCESSES FOO_BAR INI shows
    master, processes, foo-bar, ini): a later one overrides an earlier one. brood
    sorted them, so UWSGI_PROCESSES=3 before UWSGI_INI's processes = 2 ran 3."""
    ini = write(tmp_path, "e.ini", "[uwsgi]\nprocesses = 2\n")
    env = {"UWSGI_PROCESSES": "3", "UWSGI_FOO_BAR": "x", "UWSGI_INI": ini}
    cfg = load_config([], environ=env)
    assert [k for k, _ in cfg.assembled] == ["processes", "foo-bar", "ini", "processes"]
    assert cfg["processes"] == 2


def test_variables_alone_are_a_command_line(monkeypatch, capsys):
    """brood with no argument but UWSGI_* variables runs them, not the usage."""
    from brood.cli import main

    monkeypatch.setenv("UWSGI_VERSION", "1")
    assert main([]) == 0
    assert capsys.readouterr().out.startswith("brood ")


def test_include_reads_at_once_inherit_reads_a_template_last_unexpanded(tmp_path):
    """As uWSGI 2.0.21: include = is read in place; inherit = once everything else is
    read, after the expansion (its %(name) stay as written, said in a line), with the
    first file's capitals; an inherit value is itself expanded."""
    write(tmp_path, "base.ini", "[uwsgi]\nbase = 1\nshared = from-base\n")
    write(tmp_path, "tpl.ini", "[uwsgi]\nx = %(first)\nw = %n-%N\n")
    main = write(tmp_path, "main.ini", "[uwsgi]\nfirst = F\ninherit = %(dir)/tpl.ini\n"
                                       "mid = %(base)\ninclude = %dbase.ini\nlast = %(shared)\n"
                                       f"dir = {tmp_path}\n")
    cfg = load_config(["--ini", main, "--procname", "zz"], environ={})
    assert cfg.assembled == (
        ("ini", main), ("first", "F"), ("inherit", f"{tmp_path}/tpl.ini"), ("mid", "1"),
        ("include", f"{tmp_path}/base.ini"), ("base", "1"), ("shared", "from-base"),
        ("last", "from-base"), ("dir", str(tmp_path)), ("procname", "zz"),
        ("x", "%(first)"), ("w", "tpl-main"))
    assert cfg.ini_files == (main, f"{tmp_path}/base.ini", f"{tmp_path}/tpl.ini")
    assert f"{tmp_path}/tpl.ini:2: x = %(first): not expanded (a template read by " \
           "inherit comes after the expansion, as in uWSGI)" in cfg.ignored


def test_a_template_read_from_itself_is_a_loop(tmp_path):
    a = write(tmp_path, "a.ini", "[uwsgi]\ninherit = %db.ini\n")
    write(tmp_path, "b.ini", "[uwsgi]\ninherit = %da.ini\n")
    with pytest.raises(OptionError, match=r"^--ini: include loop: .*a\.ini -> .*b\.ini -> "):
        load_config([a], environ={})


def test_ini_colon_section_reads_the_last_file_read(tmp_path):
    """``ini = :other`` and ``--ini :other``: the last file read, an include's if one
    came since (uWSGI's last_file)."""
    write(tmp_path, "base.ini", "[uwsgi]\nb = 1\n[other]\nsec = other-%n\n")
    main = write(tmp_path, "main.ini", "[uwsgi]\ninclude = %dbase.ini\nini = :other\n"
                                       "[other]\nsec = other-%n\n")
    cfg = load_config(["--ini", main, "--ini", ":other"], environ={})
    assert [v for k, v in cfg.assembled if k == "sec"] == ["other-base", "other-base"]
    with pytest.raises(OptionError, match=r"^ini :x: no file was read before to take \[x\]"):
        load_config(["--ini", ":x"], environ={})


def test_expansion_order_is_env_then_files_then_placeholders(tmp_path):
    """$(VAR) first, @() second, %(name) last (uWSGI's ParsingOrder): a file named by a
    variable is read; a file's $(VAR) stays, its %(name) is filled; a placeholder
    holding $(VAR) gets it expanded (the value it names went through the first pass)."""
    (tmp_path / "val").write_text("v=%(foo)$(HOME)\n")
    ini = write(tmp_path, "a.ini", "[uwsgi]\nfoo = 1\nf = @($(DIR)/val)\nh = $(HOME)\n"
                                   "g = %(h)\n")
    cfg = load_config([ini], environ={"DIR": str(tmp_path), "HOME": "/home/u"})
    assert dict(cfg.assembled)["f"] == "v=1$(HOME)"
    assert dict(cfg.assembled)["g"] == "/home/u"


def test_a_bad_source_names_the_file_and_line(tmp_path):
    ini = write(tmp_path, "a.ini", "[uwsgi]\n\nx = @(exec://exit 4)\n")
    with pytest.raises(OptionError) as info:
        load_config([ini], environ={})
    assert str(info.value) == f"{ini}:3: @(exec://exit 4): the command exited with status 4"
    ini = write(tmp_path, "b.ini", "[uwsgi]\nx = [@(/nonexistent/x)]\n")
    with pytest.raises(OptionError, match=rf"^{ini}:2: @\(/nonexistent/x\): cannot read"):
        load_config([ini], environ={})
    ini = write(tmp_path, "c.ini", "[uwsgi]\nx = @(sym://foo)\n")
    with pytest.raises(OptionError, match=rf"^{ini}:2: @\(sym://foo\): sym:// reads a symbol"):
        load_config([ini], environ={})


def test_options_uwsgi_applies_at_once_are_not_expanded(tmp_path):
    """uWSGI applies ini, listen, set-ph... as it reads them, before any expansion: a
    %(name) there is text, and brood says why a number then does not read."""
    ini = write(tmp_path, "a.ini", "[uwsgi]\nbacklog = 64\nlisten = %(backlog)\n")
    with pytest.raises(OptionError) as info:
        load_config([ini], environ={})
    assert str(info.value) == (
        f"{ini}:3: --listen: expected a whole number, got '%(backlog)' (uWSGI reads "
        "--listen as written, at once: no $(VAR), @() or %(name) in it)")
    ini = write(tmp_path, "b.ini", "[uwsgi]\nset-ph = a=$(HOME)\nb = %(a)\ne = $(HOME)\n")
    assert load_config([ini], environ={"HOME": "/h"}).assembled == (
        ("set-ph", "a=$(HOME)"), ("a", "$(HOME)"), ("b", "$(HOME)"), ("e", "/h"))


def test_set_ph_of_an_option_is_refused_as_uwsgi_refuses_it():
    with pytest.raises(OptionError) as info:
        load_config(["--set-ph", "processes=3"], environ={})
    assert str(info.value) == ("--set-ph processes=3: processes is an option, not a "
                               "placeholder (uWSGI refuses it too): use set")


def test_assembled_config_as_show_config_prints_it(tmp_path):
    """Keys as written (an alias stays an alias, a short letter gives the long name),
    a bare command-line flag as true, a bare ini key empty, no line for a positional
    file, set and set-ph with the key they make."""
    from brood.config.assemble import show_config

    ini = write(tmp_path, "a.ini", "[uwsgi]\nmaster\nvacuum =\nfoo = bar\n")
    cfg = load_config(["-p", "4", "-M", "--workers", "2", ini, "--ini", ini, "-S", "x=1",
                       "--set-ph", "y=2", "--show-config"], environ={"UWSGI_THREADS": "2"})
    assert show_config(list(cfg.assembled)) == (
        "\n;uWSGI instance configuration\n[uwsgi]\nthreads = 2\nprocesses = 4\nmaster = true\n"
        f"workers = 2\nini = {ini}\nmaster = \nvacuum = \nfoo = bar\n"
        "set = x=1\nx = 1\nset-ph = y=2\ny = 2\nshow-config = true\n"
        "master = \nvacuum = \nfoo = bar\n;end of configuration\n\n")
    assert cfg["show-config"] is True and cfg["processes"] == 2


def test_positional_files_are_read_after_every_option(tmp_path):
    """As getopt hands them to uWSGI: ``brood app.ini -p 8`` runs the file's value."""
    ini = write(tmp_path, "a.ini", "[uwsgi]\nprocesses = 3\n")
    assert load_config([ini, "-p", "8"], environ={})["processes"] == 3
    assert load_config(["--ini", ini, "-p", "8"], environ={})["processes"] == 8


def test_a_bare_command_line_flag_is_no_placeholder_value(tmp_path):
    """uWSGI: %(master) of --master stays as written; of a bare ini key it is empty."""
    ini = write(tmp_path, "a.ini", "[uwsgi]\nx = [%(master)] [%(vacuum)] [%(processes)]\n"
                                   "vacuum\n")
    cfg = load_config(["--master", "-p", "3", ini], environ={})
    assert dict(cfg.assembled)["x"] == "[%(master)] [] [3]"


def test_an_include_named_with_a_placeholder_says_why_it_is_not_found(tmp_path):
    """uWSGI applies ini/include as it reads them: %(dir) there is text (brood used to
    expand it); the line says so."""
    write(tmp_path, "x.ini", "[uwsgi]\nx = 1\n")
    ini = write(tmp_path, "a.ini", f"[uwsgi]\ndir = {tmp_path}\nini = %(dir)/x.ini\n")
    with pytest.raises(OptionError) as info:
        load_config([ini], environ={})
    assert str(info.value) == ("--ini: no such file: %(dir)/x.ini (uWSGI reads ini/include "
                               "as written, at once: no $(VAR), @() or %(name) there; "
                               "inherit is expanded)")


def test_words_that_are_not_utf8_are_refused_wherever_they_come_from(tmp_path):
    """As an ini file's values are: a --procname of latin-1 bytes from the shell, or
    from a UWSGI_ variable, stopped the master with a UnicodeEncodeError traceback."""
    latin = "caf\udce9"  # (b"caf\xe9" as Python gives a command-line word)
    with pytest.raises(OptionError, match=r"^--procname: not UTF-8 text$"):
        load_config(["--procname", latin], environ={})
    with pytest.raises(OptionError, match=r"^\$UWSGI_PROCNAME: not UTF-8 text$"):
        load_config([], environ={"UWSGI_PROCNAME": latin})
    lines = tmp_path / "lines.txt"
    lines.write_bytes(b"caf\xe9\n")
    with pytest.raises(OptionError, match=r"^--procname: not UTF-8 text$"):
        load_config(["--for-readline", str(lines), "--procname", "%(_)", "--endfor"],
                    environ={})


@pytest.mark.parametrize("argv, message", [
    (["--ini="], "--ini needs a file"),
    (["--endif"], "--endif without a for or if-* block open"),
    (["--for-glob=", "--endfor"], "--for-glob needs a value"),
])
def test_a_command_line_mistake_names_the_option_as_written_there(argv, message):
    """(the line said "ini needs a file", as if of an ini file without its name)"""
    with pytest.raises(OptionError) as info:
        load_config(argv, environ={})
    assert str(info.value) == message
