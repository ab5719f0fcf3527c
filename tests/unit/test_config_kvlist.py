"""uWSGI's kvlist (brood.config.kvlist), shared by --cache2, --attach-daemon2, --subscribe2."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brood.config.kvlist import split_kvlist


def test_pairs_escapes_and_blank_items():
    assert split_kvlist(r"cmd=echo a\,b,freq=3,, ,x=") == [
        ("cmd", "echo a,b"), ("freq", "3"), ("x", "")]
    assert split_kvlist("a=b=c") == [("a", "b=c")]  # the first = splits


def test_an_item_without_equals_is_an_error_unless_lenient():
    with pytest.raises(ValueError, match="^junk$"):
        split_kvlist("a=1,junk")
    assert split_kvlist("a=1,junk", strict=False) == [("a", "1")]


SAFE = st.text(st.characters(blacklist_characters=",\\="), min_size=1)


@given(st.lists(st.tuples(SAFE, st.text()), max_size=5))
def test_escaped_values_come_back_as_written(pairs):
    pairs = [(k, v) for k, v in pairs if k.strip()]
    text = ",".join(f"{k}={v.replace(chr(92), chr(92) * 2).replace(',', chr(92) + ',')}"
                    for k, v in pairs)
    assert split_kvlist(text) == pairs
