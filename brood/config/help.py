"""``brood --help``: every declared option, grouped by the part that reads it.

Generated from the option table alone, so it can never disagree with what the parser
accepts. Groups follow ``PARTS`` in brood.config.options; parts declared elsewhere come last.
"""

from __future__ import annotations

import textwrap

from brood.config import options as _table
from brood.config.option import Option, all_options

USAGE = "usage: brood [OPTIONS] [FILE.ini[:SECTION]]..."
_INTRO = (
    "Options use uWSGI's names and may be given on the command line (--name value,\n"
    "--name=value) or as 'name = value' lines in an ini file (--ini FILE)."
)
_METAVAR = {"str": "VALUE", "int": "N", "float": "NUM", "size": "BYTES", "bool": ""}
_WIDTH = 100
_COLUMN = 34  # where help text starts; longer option spellings put it on the next line


def part_order() -> list[str]:
    """Part names in help order: those of PARTS modules first, in declaration order."""
    order: list[str] = []
    for module in _table.PARTS:
        for opt in module.OPTIONS:
            if opt.part not in order:
                order.append(opt.part)
    for opt in all_options():
        if opt.part not in order:
            order.append(opt.part)
    return order


def option_usage(opt: Option) -> str:
    """``-s, --socket ADDR``: how the option is spelled, with its value placeholder."""
    short = f"-{opt.short}, " if opt.short else "    "
    metavar = opt.metavar or _METAVAR.get(opt.kind, "VALUE")
    if opt.kind == "bool":
        value = ""
    elif opt.optional:
        value = f"[={metavar}]"
    else:
        value = f" {metavar}"
    return f"{short}--{opt.name}{value}"


def help_sentence(opt: Option) -> str:
    """The declared help, plus why brood refuses the option when it does."""
    return f"{opt.help} (refused: {opt.refused})" if opt.refused else opt.help


def option_help(opt: Option) -> str:
    """The help sentence followed by default, choices, aliases and repeatability."""
    notes = [help_sentence(opt)]
    if opt.default not in (None, False, "", 0) and not opt.multi:  # 0 means "off"; help says so
        notes.append(f"(default: {opt.default})")
    if opt.choices:
        notes.append(f"(one of: {', '.join(opt.choices)})")
    if opt.aliases:
        notes.append(f"(alias: {', '.join('--' + a for a in opt.aliases)})")
    if opt.multi:
        notes.append("[repeatable]")
    return " ".join(notes)


def _line(opt: Option) -> str:
    left = "  " + option_usage(opt)
    indent = " " * _COLUMN
    if len(left) + 2 > _COLUMN:
        head, first = left + "\n", indent
    else:
        head, first = "", left.ljust(_COLUMN)
    body = textwrap.fill(option_help(opt), _WIDTH, initial_indent=first,
                         subsequent_indent=indent)
    return head + body


def render_help() -> str:
    """The full ``--help`` text."""
    sections = [USAGE, "", _INTRO]
    by_part: dict[str, list[Option]] = {}
    for opt in all_options():
        by_part.setdefault(opt.part, []).append(opt)
    for part in part_order():
        if by_part.get(part):
            sections += ["", f"{part} options:"]
            sections += [_line(opt) for opt in by_part[part]]
    return "\n".join(sections) + "\n"


# -- the README's option reference ---------------------------------------------------------
# ``scripts/options-reference`` prints it; tests/unit/test_readme_options.py checks that the
# README's block between the markers below is exactly this text.

MARKDOWN_BEGIN = "<!-- options:begin -->"
MARKDOWN_END = "<!-- options:end -->"
_MD_SPECIAL = str.maketrans({"\\": "\\\\", "|": "\\|", "*": "\\*", "<": "&lt;", ">": "&gt;"})


def _md_value(opt: Option) -> str:
    """The value column: kind, then default, choices and repeatability."""
    notes = ["flag" if opt.kind == "bool" else opt.kind]
    if opt.optional:
        notes.append(f"may be given bare (= {opt.implicit or 'empty'})")
    if opt.default not in (None, False, "", 0) and not opt.multi:
        notes.append(f"default {opt.default}")
    if opt.choices:
        notes.append("one of " + ", ".join(opt.choices))
    if opt.multi:
        notes.append("repeatable")
    return ", ".join(notes)


def _md_row(opt: Option) -> str:
    usage = option_usage(opt).strip().replace("|", "\\|")
    names = ", ".join(f"`{part}`" for part in usage.split(", "))
    aliases = ", ".join(f"`--{a}`" for a in opt.aliases)
    return f"| {names} | {aliases} | {_md_value(opt)} | {help_sentence(opt).translate(_MD_SPECIAL)} |"


def render_markdown() -> str:
    """The option reference as Markdown: one table per part, in ``--help`` order."""
    by_part: dict[str, list[Option]] = {}
    for opt in all_options():
        by_part.setdefault(opt.part, []).append(opt)
    lines: list[str] = []
    for part in part_order():
        if by_part.get(part):
            lines += [f"### {part} options", "", "| option | aliases | value | help |",
                      "| --- | --- | --- | --- |"]
            lines += [_md_row(opt) for opt in by_part[part]]
            lines.append("")
    return "\n".join(lines)
