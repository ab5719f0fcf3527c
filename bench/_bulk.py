#!/usr/bin/env python3
"""Bulk TCP sink and source used by bench/rawrouter.py (stdlib only, Linux).

    python bench/_bulk.py sink              listen on 127.0.0.1:0, print the port; for each
                                            connection read an 8-byte big-endian length N,
                                            then N bytes (spliced into /dev/null, no copy to
                                            user space), answer "<count>\\n" and close
    python bench/_bulk.py source PORT BYTES send the length and BYTES (sendfile from a 4 MiB
                                            memfd, no copy from user space), wait for the
                                            count; prints JSON {"bytes", "acked", "seconds"}

The length prefix means no half-close is needed (uWSGI's rawrouter does not relay one).

Both ends avoid user-space copies so that "direct" measures the kernel, not Python.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import sys
import threading
import time

CHUNK = 4 << 20
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


def _pipe() -> tuple[int, int]:
    r, w = os.pipe()
    try:
        with open("/proc/sys/fs/pipe-max-size") as f:
            size = min(int(f.read()), 1 << 20)
        fcntl.fcntl(w, F_SETPIPE_SZ, size)
    except OSError:
        pass
    return r, w


def _drain(conn: socket.socket) -> None:
    total = 0
    r, w = _pipe()
    null = os.open("/dev/null", os.O_WRONLY)
    try:
        head = b""
        while len(head) < 8:
            data = conn.recv(8 - len(head))
            if not data:
                return
            head += data
        want = int.from_bytes(head, "big")
        fd = conn.fileno()
        while total < want:
            n = os.splice(fd, w, min(1 << 20, want - total), flags=getattr(os, "SPLICE_F_MOVE", 1))
            if n == 0:
                break
            total += n
            while n:
                n -= os.splice(r, null, n)
        conn.sendall(b"%d\n" % total)
    except OSError:
        pass
    finally:
        os.close(r)
        os.close(w)
        os.close(null)
        conn.close()


def sink() -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started ignoring it
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(128)
    print(f"sink listening on 127.0.0.1:{srv.getsockname()[1]}", flush=True)
    try:
        while True:
            conn, _ = srv.accept()
            threading.Thread(target=_drain, args=(conn,), daemon=True).start()
    except KeyboardInterrupt:
        pass
    finally:
        srv.close()


def source(port: int, nbytes: int) -> None:
    mfd = os.memfd_create("bulk")
    os.write(mfd, os.urandom(1 << 16) * (CHUNK >> 16))
    sock = socket.create_connection(("127.0.0.1", port))
    fd = sock.fileno()
    t0 = time.perf_counter()
    sock.sendall(nbytes.to_bytes(8, "big"))
    left = nbytes
    off = 0
    while left:
        n = os.sendfile(fd, mfd, off, min(left, CHUNK - off))
        left -= n
        off = (off + n) % CHUNK
    reply = b""
    while not reply.endswith(b"\n"):
        data = sock.recv(64)
        if not data:
            break
        reply += data
    seconds = time.perf_counter() - t0
    sock.close()
    acked = int(reply) if reply.strip().isdigit() else -1
    print(json.dumps({"bytes": nbytes, "acked": acked, "seconds": seconds}))


if __name__ == "__main__":
    if sys.argv[1:2] == ["sink"]:
        sink()
    elif sys.argv[1:2] == ["source"] and len(sys.argv) == 4:
        source(int(sys.argv[2]), int(sys.argv[3]))
    else:
        sys.exit(__doc__)
