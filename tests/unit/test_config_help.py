"""--help is generated from the table: every option, grouped, with shorts/aliases/defaults."""

from brood.config.help import option_help, option_usage, part_order, render_help
from brood.config.option import Option, all_options, lookup


def test_usage_line_first():
    assert render_help().splitlines()[0].startswith("usage: brood")


def test_every_declared_option_appears():
    text = render_help()
    for opt in all_options():
        assert f"--{opt.name}" in text, opt.name


def test_foundation_groups_in_parts_order():
    text = render_help()
    core, workers, stats = (text.index(f"\n{p} options:") for p in ("core", "workers", "stats"))
    assert core < workers < stats
    assert part_order()[:3] == ["core", "workers", "stats"]


def test_option_lines_show_short_metavar_default_alias_repeatable():
    lines = render_help().splitlines()
    socket = next(i for i, line in enumerate(lines) if "--socket ADDR" in line)
    block = " ".join(lines[socket:socket + 2])
    assert lines[socket].startswith("  -s, --socket ADDR")
    assert "--uwsgi-socket" in block and "[repeatable]" in block
    processes = next(line for line in lines if "--processes" in line)
    assert processes.startswith("  -p, --processes N")
    assert "(default: 1)" in processes and "--workers" in processes


def test_bool_has_no_metavar_and_optional_shows_brackets():
    assert option_usage(lookup("master")) == "-M, --master"
    opt = Option("x-demo", "demo", "demo", optional=True, implicit="1", metavar="V")
    assert option_usage(opt) == "    --x-demo[=V]"


def test_option_help_notes():
    opt = Option("x-demo", "demo", "does things", kind="int", default=7, aliases=("xd",),
                 choices=("7", "8"))
    assert option_help(opt) == "does things (default: 7) (one of: 7, 8) (alias: --xd)"


def test_lines_fit_terminal_width():
    assert max(len(line) for line in render_help().splitlines()) <= 100
