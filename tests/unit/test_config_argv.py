"""The command line: uWSGI's getopt_long-like forms, bool forms, errors in one line."""

import pytest

from brood.config.argv import parse_argv
from brood.config.load import load_config
from brood.config.option import OptionError


def test_long_forms_space_and_equals():
    cfg = load_config(["--socket", "127.0.0.1:3031", "--processes=4", "--callable", "app"])
    assert cfg["socket"] == ["127.0.0.1:3031"]
    assert cfg["processes"] == 4
    assert cfg["callable"] == "app"


def test_defaults_when_unset():
    cfg = load_config([])
    assert cfg["processes"] == 1
    assert cfg["listen"] == 100
    assert cfg["buffer-size"] == 4096
    assert cfg["callable"] == "application"
    assert cfg["socket"] == []
    assert not cfg["master"]


def test_value_may_contain_equals_sign():
    cfg = load_config(["--env", "A=B=C", "--env=X=1"])
    assert cfg["env"] == ["A=B=C", "X=1"]


def test_multi_options_accumulate_in_order_and_scalars_override():
    cfg = load_config(["-s", ":1", "--socket", ":2", "--uwsgi-socket=:3", "-p", "2", "-p", "5"])
    assert cfg["socket"] == [":1", ":2", ":3"]
    assert cfg["processes"] == 5


def test_short_forms():
    assert load_config(["-p", "3"])["processes"] == 3
    assert load_config(["-p3"])["processes"] == 3
    assert load_config(["-s/tmp/x.sock"])["socket"] == ["/tmp/x.sock"]


@pytest.mark.parametrize("argv", [["-Mp", "4"], ["-Mp4"], ["-M", "-p4"]])
def test_grouped_short_flags(argv):
    cfg = load_config(argv)
    assert cfg["master"] is True
    assert cfg["processes"] == 4


def test_grouped_flags_only():
    cfg = load_config(["-MTL"])
    assert (cfg["master"], cfg["enable-threads"], cfg["disable-logging"]) == (True, True, True)


@pytest.mark.parametrize(
    "word, expected",
    [("--master", True), ("--master=1", True), ("--master=true", True),
     ("--master=0", False), ("--master=false", False), ("--master=off", False)],
)
def test_bool_forms(word, expected):
    assert load_config([word])["master"] is expected


def test_bare_bool_does_not_swallow_next_word():
    with pytest.raises(OptionError, match="unexpected argument 'false'"):
        load_config(["--master", "false"])
    cfg = load_config(["--master", "--vacuum"])
    assert cfg["master"] is True and cfg["vacuum"] is True


@pytest.mark.parametrize("value, read", [
    ("0", False), ("false", False), ("No", False), ("OFF", False),
    ("1", True), ("yes", True), ("", True), ("n", True), ("f", True), ("enabled", True),
])
def test_bool_values_read_as_uwsgi_reads_them(value, read):
    """False only for 0/false/no/off; anything else, the empty value too, is true."""
    assert load_config([f"--master={value}"])["master"] is read


def test_aliases_and_underscores():
    cfg = load_config(["--workers", "2", "--wsgi-file", "a.py", "--pp", "/x",
                       "--python_path", "/y", "--virtualenv", "/venv", "--stats-server", ":1"])
    assert cfg["processes"] == 2
    assert cfg["pythonpath"] == ["/x", "/y"]
    assert cfg["home"] == "/venv"
    assert cfg["stats"] == ":1"


def test_size_and_int_conversion():
    cfg = load_config(["-b", "64k", "--limit-post", "1m", "-t", "30"])
    assert cfg["buffer-size"] == 65536
    assert cfg["limit-post"] == 1024 * 1024
    assert cfg["harakiri"] == 30


def test_bad_int_names_the_option():
    with pytest.raises(OptionError) as info:
        load_config(["--processes", "many"])
    assert str(info.value) == "--processes: expected a whole number, got 'many'"


def test_unknown_option_suggests_close_match():
    with pytest.raises(OptionError) as info:
        load_config(["--proceses", "4"])
    assert str(info.value) == "unknown option --proceses (did you mean --processes?)"


def test_unknown_option_without_close_match():
    with pytest.raises(OptionError) as info:
        load_config(["--zzzzqqqq"])
    assert str(info.value) == "unknown option --zzzzqqqq"


def test_unknown_short():
    with pytest.raises(OptionError, match=r"^unknown option -Z$"):
        load_config(["-Z"])


def test_missing_value_at_end():
    with pytest.raises(OptionError) as info:
        load_config(["--socket"])
    assert str(info.value) == "--socket needs a value"


def test_missing_value_before_another_option():
    with pytest.raises(OptionError, match=r"^--socket needs a value$"):
        load_config(["--socket", "--master"])


def test_missing_short_value():
    with pytest.raises(OptionError, match=r"^-p \(--processes\) needs a value$"):
        load_config(["-Mp"])


def test_value_starting_with_dash_is_taken():
    assert load_config(["--chdir", "-weird-dir"])["chdir"] == "-weird-dir"


def test_unexpected_positional():
    with pytest.raises(OptionError, match="unexpected argument 'app.py'"):
        load_config(["app.py"])


def test_double_dash_ends_options(tmp_path):
    ini = tmp_path / "x.ini"
    ini.write_text("[uwsgi]\nprocesses = 6\n")
    assert load_config(["--", str(ini)])["processes"] == 6


def test_parse_argv_keeps_order_and_options():
    pairs = parse_argv(["-M", "--socket", "a", "-s", "b"])
    assert [(o.name, v) for o, v in pairs] == [("master", True), ("socket", "a"), ("socket", "b")]


def test_config_remembers_argv(tmp_path):
    ini = tmp_path / "a.ini"
    ini.write_text("[uwsgi]\nmaster = true\n")
    argv = ["--ini", str(ini), "-p", "2"]
    cfg = load_config(argv)
    assert cfg.argv == tuple(argv)
    assert cfg.ini_files == (str(ini),)
    assert cfg.with_values(processes=3).argv == tuple(argv)


def test_unprintable_unknown_option_stays_one_line():
    with pytest.raises(OptionError) as info:
        load_config(["--a\nb"])
    assert "\n" not in str(info.value)


def test_auto_weight_takes_a_following_boolean_word_as_uwsgi_2_0_does():
    from brood.config.load import load_config

    assert load_config(["--auto-weight", "0", "--master"])["auto-weight"] is False
    cfg = load_config(["--auto-weight", "--master"])
    assert cfg["auto-weight"] is True and cfg["master"] is True


@pytest.mark.parametrize("word", ["site.yaml", "site.yml", "site.json", "conf/site.xml"])
def test_a_yaml_json_or_xml_config_is_named_as_such(word):
    """Not 'has no [uwsgi] section': brood reads ini files only, and says so."""
    with pytest.raises(OptionError, match=f"^{word}: brood reads ini files only"):
        load_config([word])
