"""A refused option (a part not in this release) stops a real start-up at once."""

from __future__ import annotations

import subprocess
import sys


def test_zerg_is_refused_before_anything_binds(hello_app, tmp_path) -> None:
    sock = tmp_path / "app.sock"
    done = subprocess.run(
        [sys.executable, "-m", "brood", "--socket", str(sock), "--wsgi-file", hello_app,
         "--fastrouter", "127.0.0.1:0", "--fastrouter-zerg", str(tmp_path / "zerg.sock")],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert done.returncode == 1
    assert done.stderr == ("brood: --fastrouter-zerg: zerg servers and pools are not in "
                           "this release\n")
    assert not sock.exists()  # refused before binding or forking anything
