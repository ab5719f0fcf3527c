"""README.md's option reference is the generated one (``scripts/options-reference --readme``
rewrites it), so it cannot drift from the option table."""

from pathlib import Path

from brood.config.help import MARKDOWN_BEGIN, MARKDOWN_END, render_markdown
from brood.config.option import all_options

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_block_is_the_generated_reference():
    text = README.read_text()
    assert text.count(MARKDOWN_BEGIN) == 1 and text.count(MARKDOWN_END) == 1
    block = text.split(MARKDOWN_BEGIN, 1)[1].split(MARKDOWN_END, 1)[0]
    assert block.strip() == render_markdown().strip(), (
        "README.md's option reference is stale: run scripts/options-reference --readme")


def test_every_option_has_one_row():
    rows = [line for line in render_markdown().splitlines() if line.startswith("| `")]
    long_names = []
    for row in rows:
        spellings = row.split(" | ")[0].strip("| ").split(", ")
        long_names += [s.strip("`").split(" ")[0].split("[")[0][2:] for s in spellings
                       if s.startswith("`--")]
    assert sorted(long_names) == sorted(opt.name for opt in all_options())


def test_cells_never_break_the_table():
    for line in render_markdown().splitlines():
        if line.startswith("|"):
            assert line.replace("\\|", "").count("|") == 5, line
