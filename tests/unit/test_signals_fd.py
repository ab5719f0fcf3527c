"""The master's signal pipe under a low file limit (``ulimit -n`` 64 and less)."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import os, resource, signal
resource.setrlimit(resource.RLIMIT_NOFILE, ({limit}, {limit}))
from brood.signals import SignalPipe
pipe = SignalPipe([signal.SIGHUP])
print(pipe._r, pipe._w)
"""


def test_the_signal_pipe_stays_low_when_64_is_past_the_limit():
    for limit, high in ((32, False), (64, False), (256, True)):
        out = subprocess.run([sys.executable, "-c", PROBE.format(limit=limit)],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        fds = [int(fd) for fd in out.stdout.split()]
        assert all(fd >= 64 for fd in fds) == high, (limit, fds)
