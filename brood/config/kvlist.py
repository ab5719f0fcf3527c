"""uWSGI's kvlist, the ``key=value,key=value`` values of --cache2, --attach-daemon2 and
--subscribe2: items separated by ``,``, a backslash keeping the next character as it is
(``cmd=echo a\\,b``), empty (or blank) items skipped."""

from __future__ import annotations


def split_kvlist(text: str, *, strict: bool = True) -> list[tuple[str, str]]:
    """The (key, value) pairs of ``text``, keys as written. An item without ``=``
    raises ValueError(item) when ``strict``; else it is dropped."""
    pairs: list[tuple[str, str]] = []
    current: list[str] = []
    escaped = False
    for char in text + ",":
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            item = "".join(current)
            current = []
            if not item.strip():
                continue
            key, eq, value = item.partition("=")
            if eq:
                pairs.append((key, value))
            elif strict:
                raise ValueError(item)
        else:
            current.append(char)
    return pairs
