"""brood.workers.static's pure parts and lookup: uWSGI's static file rules (mapping,
escapes refused, index, skip-ext, Range, If-Modified-Since, Expires, gzip)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brood.config.option import OptionError
from brood.workers.static import (
    INVALID,
    Static,
    StaticFront,
    header_rules,
    http_date,
    load_mime_types,
    parse_http_date,
    parse_range,
    static_from_config,
)


class Cfg(dict):
    def __missing__(self, key: str):
        return None


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "a.css").write_bytes(b"body{}")
    (root / "a.css.gz").write_bytes(b"GZ")
    (root / "x.py").write_bytes(b"py")
    (root / "sub" / "index.html").write_bytes(b"hello")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "s.txt").write_bytes(b"secret")
    (root / "link.txt").symlink_to(tmp_path / "other" / "s.txt")
    return tmp_path


def _static(tree: Path, **extra) -> Static:
    cfg = Cfg({"static-map": [f"/static={tree / 'root'}"], **extra})
    s = static_from_config(cfg, log=lambda _: None)
    assert s is not None
    return s


def test_no_option_no_static() -> None:
    assert static_from_config(Cfg()) is None
    assert header_rules(Cfg()) == ([], frozenset())


def test_lookup_as_uwsgi(tree: Path) -> None:
    s = _static(tree, **{"static-index": ["index.html"], "static-skip-ext": [".py"]})
    root = os.fsencode(tree / "root")
    assert s.lookup(b"/static/a.css").path == root + b"/a.css"
    assert s.lookup(b"/static/sub").path == root + b"/sub/index.html"
    assert s.lookup(b"/static/missing") is None
    assert s.lookup(b"/static/x.py") is None
    assert s.lookup(b"/static/link.txt") is None  # a symlink out: refused
    assert s.lookup(b"/static/../other/s.txt") is None
    assert s.lookup(b"/staticx") is None and s.lookup(b"/static") is None


def test_static_safe_and_map2(tree: Path) -> None:
    s = _static(tree, **{"static-safe": [str(tree / "other")],
                         "static-map2": [f"/root={tree}"]})
    assert s.lookup(b"/static/link.txt").path.endswith(b"/other/s.txt")
    assert s.lookup(b"/root/a.css").path.endswith(b"/root/a.css")


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(["..", ".", "", "a.css", "sub", "link.txt", "other",
                                 "s.txt", "%2e", "\x00", "root"]), max_size=6))
def test_no_path_escapes(tree: Path, parts: list[str]) -> None:
    s = _static(tree, **{"static-index": ["index.html"]})
    found = s.lookup(("/static/" + "/".join(parts)).encode())
    if found is not None:
        assert found.path.startswith(os.fsencode(tree / "root") + b"/")


def test_range() -> None:
    assert parse_range("bytes=2-4", 10) == (2, 4)
    assert parse_range("bytes=5-100", 10) == (5, 9)
    assert parse_range("bytes=-3", 10) == (7, 9)
    assert parse_range("bytes=1-2,4-5", 10) == (1, 2)
    assert parse_range("bytes=20-", 10) == INVALID
    assert parse_range("bytes=4-2", 10) == INVALID
    assert parse_range("items=1-2", 10) is None
    assert parse_range("bytes=x-2", 10) is None


@given(st.text(max_size=30), st.integers(0, 1000))
def test_range_in_bounds(value: str, size: int) -> None:
    got = parse_range(value, size)
    if got is not None and got != INVALID:
        assert 0 <= got[0] <= got[1] < size


def test_dates() -> None:
    assert http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert parse_http_date("Thu, 01 Jan 2099 00:00:00 GMT") == 4070908800
    assert parse_http_date("garbage") is None


def test_answers(tree: Path) -> None:
    s = _static(tree, **{"honour-range": True, "static-expires-type": ["text/css=60"],
                         "static-gzip-all": True})
    found = s.lookup(b"/static/a.css")
    mtime = found.st.st_mtime
    status, headers, off, n = s.answer(found, {}, 1000)
    assert status == "200 OK" and (off, n) == (0, 6)
    assert headers == [("Content-Type", "text/css"), ("Expires", http_date(1060)),
                       ("Content-Length", "6"), ("Last-Modified", http_date(mtime))]
    status, headers, off, n = s.answer(found, {"HTTP_RANGE": "bytes=1-2"}, 1000)
    assert status.startswith("206") and (off, n) == (1, 2)
    assert ("Content-Range", "bytes 1-2/6") in headers
    status, headers, _, n = s.answer(found, {"HTTP_RANGE": "bytes=9-"}, 1000)
    assert status.startswith("416") and n == -1
    assert s.answer(found, {"HTTP_IF_MODIFIED_SINCE": http_date(mtime)}, 0)[0] == \
        "304 Not Modified"
    gz = s.want_gzip(found, "gzip, deflate")
    assert gz.path.endswith(b".gz")
    assert s.answer(gz, {}, 0)[1][:2] == [("Content-Encoding", "gzip"),
                                          ("Content-Type", "text/css")]
    assert s.want_gzip(found, "deflate") is found


def test_mime_file(tmp_path: Path) -> None:
    p = tmp_path / "m.types"
    p.write_text("# c\ntext/x-foo foo css\ntext/y foo\n")
    assert load_mime_types([str(p)]) == {"foo": "text/x-foo", "css": "text/x-foo"}


def test_bad_values_name_the_option() -> None:
    for cfg, name in ((Cfg({"static-map": ["/x"]}), "--static-map"),
                      (Cfg({"static-map": ["/x=/tmp"], "static-expires-type": ["a=b"]}),
                       "--static-expires-type"),
                      (Cfg({"static-map": ["/x=/tmp"], "file-serve-mode": "apache"}),
                       "--file-serve-mode")):
        with pytest.raises(OptionError, match=name):
            static_from_config(cfg)
    with pytest.raises(OptionError, match="--add-header"):
        header_rules(Cfg({"add-header": ["nocolon"]}))


def test_headers_added_and_removed() -> None:
    def app(environ, start_response):
        start_response("200 OK", [("X-Del", "1"), ("Server", "x")])
        return [b""]

    got = []
    front = StaticFront(app, None, *header_rules(Cfg({"add-header": ["X-A: 1"],
                                                      "del-header": ["x-del"]})))
    front({"REQUEST_METHOD": "GET"}, lambda s, h, e=None: got.append(h))
    assert got == [[("Server", "x"), ("X-A", "1")]]


def test_a_sibling_whose_name_starts_like_the_root_is_no_way_out(tree: Path) -> None:
    """Below the root means whole path components: a link to root-private (a plain
    string prefix of root's path, as uWSGI tests it) and an index file linked out of
    the root are refused."""
    private = tree / "root-private"
    private.mkdir()
    (private / "k.txt").write_bytes(b"key")
    (tree / "root" / "priv").symlink_to(private)
    (tree / "root" / "ix").mkdir()
    (tree / "root" / "ix" / "index.html").symlink_to(tree / "other" / "s.txt")
    said: list[str] = []
    s = static_from_config(Cfg({"static-map": [f"/static={tree / 'root'}"],
                                "static-index": ["index.html"]}), log=said.append)
    assert s is not None
    assert s.lookup(b"/static/priv/k.txt") is None
    assert s.lookup(b"/static/ix/") is None
    assert len(said) == 2 and all("security error" in line for line in said)
    assert s.lookup(b"/static/sub/") is not None  # an index inside the root still serves
