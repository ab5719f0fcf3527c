"""Fixtures to start real ``brood`` processes (see ``_broodkit`` for the handle's API).

``start_brood(*args, wait=True, cwd=None, env=None, prefix=())`` starts
``python -m brood *args`` (after ``prefix``, e.g. ``ip netns exec NS``) with its log in
the test's tmp dir, waits for ``brood: ready`` unless ``wait=False``, and is always
stopped at teardown (SIGINT, then SIGKILL of its process group).
``hello_app`` is the path of the demo WSGI app (``/sleep?s=N``, ``/error``, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from _broodkit import BroodProcess

import brood.demo.hello


@pytest.fixture(autouse=True)
def _no_resolved_names(monkeypatch) -> None:
    """Each test starts with no host name resolved by an earlier one (in-process
    routers keep them ``sockio.RESOLVED_TTL`` seconds, and ports are reused)."""
    from brood.routers.net import sockio

    monkeypatch.setattr(sockio, "_RESOLVED", {})


@pytest.fixture
def hello_app() -> str:
    return brood.demo.hello.__file__


@pytest.fixture
def start_brood(tmp_path: Path) -> Iterator[Callable[..., BroodProcess]]:
    started: list[BroodProcess] = []

    def start(*args: str, wait: bool = True, cwd: str | None = None,
              env: dict[str, str] | None = None, timeout: float = 30.0,
              prefix: Sequence[str] = ()) -> BroodProcess:
        log_path = tmp_path / f"brood-{len(started)}.log"
        proc = BroodProcess([str(a) for a in args], log_path, cwd=cwd, env=env, prefix=prefix)
        started.append(proc)
        if wait:
            proc.wait_ready(timeout=timeout)
        return proc

    try:
        yield start
    finally:
        for proc in started:
            proc.stop()
