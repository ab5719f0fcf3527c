"""Calling the WSGI app and writing its answer as raw HTTP/1.x.

How it works: each serving thread owns one ``Core`` (uWSGI's name for a request slot),
made once and reused for every request, so the per-request path allocates little.
``Core.start_response`` and ``Core.write`` are the PEP 3333 callables. The head is built
lazily, when the first body bytes go out (or the iterable ends), so an app may still
replace it with ``exc_info`` until then. A list result (the common case) is joined and
sent with its head in one system call (small bodies are copied behind the head, big
ones go out by ``sendmsg`` without a copy); a ``FileWrapper`` over a real file goes out
with ``os.sendfile``.

On HTTP sockets the head also carries the framing: a body of unknown length on a
keep-alive HTTP/1.1 connection is sent chunked, a list result gets a Content-Length,
and a connection about to close says ``Connection: close``. On uwsgi sockets the head
is exactly what the app gave (the front end frames it) and the connection closes.
"""

from __future__ import annotations

import os
import socket
import stat
import traceback
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from brood.protocol.errors import ProtocolError
from brood.protocol.http1 import simple_response
from brood.workers.input import ClientDisconnected

if TYPE_CHECKING:
    from brood.workers.wsgi import Worker

_SENDFILE_MAX = 1 << 30
# Below this size a body is copied behind the head (cheaper than sendmsg's iovec);
# above it, head and body go out together by sendmsg, so the head never travels alone
# in a small segment (TCP_NODELAY is on) and the body is never copied in Python.
_SMALL_BODY = 16384
# Encoded heads by (status, headers, version, framing inputs): most apps answer with a
# handful of distinct heads, so validation and encoding happen once per distinct head.
_HEAD_CACHE_MAX = 256
_head_cache: dict[tuple, tuple] = {}


class HeaderError(ValueError):
    """The app gave a status or header that cannot be put on the wire."""


class ClientGone(OSError):
    """Sending to the client failed (it closed, reset, or stopped reading)."""


class FileWrapper:
    """``wsgi.file_wrapper``: iterates a file-like in blocks; sent with sendfile when real."""

    __slots__ = ("filelike", "blksize")

    def __init__(self, filelike: Any, blksize: int = 8192) -> None:
        self.filelike = filelike
        self.blksize = blksize

    def __iter__(self) -> Iterator[bytes]:
        read = self.filelike.read
        while True:
            block = read(self.blksize)
            if not block:
                return
            yield block

    def close(self) -> None:
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()


def error_response(version: str, code: int) -> bytes:
    """A short plain-text answer for errors the server itself detects; closes."""
    return simple_response(code, version=version.encode("latin-1"))


def _file_fd(filelike: Any) -> int | None:
    """The fd of a regular file behind ``filelike``, or None (then iterate it)."""
    try:
        fd = filelike.fileno()
        if isinstance(fd, int) and stat.S_ISREG(os.fstat(fd).st_mode):
            return fd
    except (AttributeError, OSError, ValueError, TypeError):
        pass
    return None


class Core:
    """One serving thread's request state; see the module docstring."""

    __slots__ = (
        "worker", "id", "sock", "version", "http", "keep", "head_only", "status",
        "headers", "head_sent", "chunked", "sent", "code", "cl", "hsize", "hcount",
        "broken", "sendfile", "start_response", "write",
    )  # fmt: skip

    def __init__(self, worker: Worker, core_id: int) -> None:
        self.worker = worker
        self.id = core_id
        self.sock: socket.socket | None = None
        self.version = "HTTP/1.0"
        self.http = False
        self.keep = False
        self.head_only = False
        self._reset()
        # bound once: the app gets the same callables every request
        self.start_response = self._start_response
        self.write = self._write

    def _reset(self) -> None:
        self.status: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.head_sent = False
        self.chunked = False
        self.sent = 0
        self.code = 0
        self.cl: int | None = None
        self.hsize = 0
        self.hcount = 0
        self.broken = False
        self.sendfile = False  # the body went out with os.sendfile (the request line says so)

    # -- PEP 3333 callables -------------------------------------------------------------

    def _start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None):
        if exc_info is not None:
            try:
                if self.head_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response() called again without exc_info")
        if type(status) is not str:
            raise HeaderError(f"status must be str, not {type(status).__name__}")
        self.status = status
        self.headers = headers
        return self.write

    def _write(self, data: bytes) -> None:
        if self.status is None:
            raise AssertionError("write() before start_response()")
        if type(data) is not bytes:
            if not isinstance(data, bytes | bytearray | memoryview):
                raise TypeError(f"response body must be bytes, not {type(data).__name__}")
            data = bytes(data)
        if not self.head_sent:
            head = self._head(None)
            self.head_sent = True
            if self.head_only or not data:
                self._send(head)
            elif self.chunked:
                self._send(b"%s%x\r\n%s\r\n" % (head, len(data), data))
            else:
                self._send_head_body(head, data)
        elif self.head_only or not data:
            return
        elif self.chunked:
            self._send(b"%x\r\n%s\r\n" % (len(data), data))
        else:
            self._send(data)
        self.sent += len(data)

    # -- wire -----------------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as exc:
            self.broken = True
            raise ClientGone(f"write to client failed: {exc}") from exc

    def _send_head_body(self, head: bytes, body: bytes) -> None:
        """Head and body in one system call (see _SMALL_BODY)."""
        if len(body) < _SMALL_BODY:
            self._send(head + body)
            return
        try:
            sent = self.sock.sendmsg((head, body))
            if sent < len(head):  # a signal cut a blocking send short: finish in order
                self.sock.sendall(head[sent:])
                self.sock.sendall(body)
            elif sent < len(head) + len(body):
                self.sock.sendall(memoryview(body)[sent - len(head) :])
        except OSError as exc:
            self.broken = True
            raise ClientGone(f"write to client failed: {exc}") from exc

    def _head(self, body_len: int | None) -> bytes:
        """The encoded head; an HTTP answer that has no body by its status (1xx, 204,
        304) sends none, whatever the app returns: on a kept-alive connection it would
        be read as the start of the next answer."""
        head = self._encoded_head(body_len)
        if self.http and (self.code < 200 or self.code in (204, 304)):
            self.head_only = True
        return head

    def _encoded_head(self, body_len: int | None) -> bytes:
        """The encoded head, from the cache when this exact head was built before."""
        key = None
        if not self.worker.stopping:
            try:
                key = (self.status, tuple(self.headers), self.version, self.http, self.keep,
                       self.head_only, body_len)  # fmt: skip
                hit = _head_cache.get(key)
            except TypeError:  # unhashable headers: build (and validate) every time
                key = hit = None
            if hit is not None:
                head, self.code, self.cl, self.chunked, self.keep, self.hcount = hit
                self.hsize = len(head)
                return head
        head = self._build_head(body_len)
        if key is not None:
            if len(_head_cache) >= _HEAD_CACHE_MAX:
                _head_cache.clear()
            _head_cache[key] = (head, self.code, self.cl, self.chunked, self.keep, self.hcount)
        return head

    def _build_head(self, body_len: int | None) -> bytes:
        """Validate status and headers and encode the head; decides the framing."""
        status = self.status
        if len(status) < 4 or not status[:3].isdigit() or status[3] != " ":
            raise HeaderError(f"bad status {status!r}")
        code = self.code = int(status[:3])
        lines = [f"{self.version} {status}\r\n"]
        cl = None
        close = False
        te = False
        for name, value in self.headers:
            if type(name) is not str or type(value) is not str:
                raise HeaderError(f"header {name!r}: names and values must be str")
            low = name.lower()
            if low == "content-length":
                cl = value
            elif low == "connection":
                close = "close" in value.lower()
            elif low == "transfer-encoding":
                te = True
            lines.append(f"{name}: {value}\r\n")
        count = len(lines)
        text = "".join(lines)
        if text.count("\n") != count or text.count("\r") != count:
            raise HeaderError("CR or LF inside the status or a header")
        self.hcount = count - 1
        if cl is not None:
            try:
                self.cl = int(cl)
            except ValueError:
                raise HeaderError(f"bad Content-Length {cl!r}") from None
        if self.http:
            extra = ""
            if te or close or self.worker.stopping:
                self.keep = False
            elif cl is None and code >= 200 and code != 204 and code != 304:
                if body_len is not None:
                    extra = f"Content-Length: {body_len}\r\n"
                    self.cl = body_len
                elif self.head_only:
                    pass
                elif self.keep and self.version == "HTTP/1.1":
                    extra = "Transfer-Encoding: chunked\r\n"
                    self.chunked = True
                else:
                    self.keep = False
            if not self.keep and not close and self.version == "HTTP/1.1":
                extra += "Connection: close\r\n"
            elif self.keep and self.version == "HTTP/1.0":
                extra += "Connection: keep-alive\r\n"
            if extra:
                text += extra
                self.hcount += extra.count("\n")
        head = (text + "\r\n").encode("latin-1")
        self.hsize = len(head)
        return head

    # -- one request ----------------------------------------------------------------------

    def serve(self, environ: dict[str, Any]) -> tuple[bool, bool]:
        """Run the app for ``environ`` and send its answer.

        Returns (keep, failed): whether the connection may carry another request, and
        whether the app raised (for the exceptions counter).
        """
        self._reset()
        failed = False
        result = None
        try:
            result = self.worker.app(environ, self.start_response)
            if self.status is None:
                raise AssertionError("the app returned without calling start_response()")
            self._send_result(result)
        except Exception as exc:
            failed = self._failed(exc, environ)
        finally:
            if type(result) is not list:  # a plain list has no close()
                close = getattr(result, "close", None)
                if close is not None:
                    try:
                        close()
                    except Exception as exc:
                        failed = self._failed(exc, environ) or failed
        if self.cl is not None and self.cl != self.sent and not self.head_only:
            self.keep = False
        return self.keep and not self.broken, failed

    def _send_result(self, result: Any) -> None:
        if type(result) is list or type(result) is tuple:
            if self.head_sent:
                for chunk in result:
                    self._write(chunk)
            else:
                body = b"".join(result)
                head = self._head(len(body))
                self.head_sent = True
                if self.head_only or not body:
                    self._send(head)
                else:
                    self._send_head_body(head, body)
                self.sent = len(body)
                return
        elif type(result) is FileWrapper and not self.head_sent and self._sendfile(result):
            return
        elif type(result) is bytes:
            self._write(result)
        else:
            write = self._write
            for chunk in result:
                if chunk:
                    write(chunk)
        if not self.head_sent:
            self._send(self._head(0))
            self.head_sent = True
        if self.chunked:
            self._send(b"0\r\n\r\n")

    def _sendfile(self, wrapper: FileWrapper) -> bool:
        """Send a real file with os.sendfile; False when it must be iterated instead."""
        fd = _file_fd(wrapper.filelike)
        if fd is None:
            return False
        try:
            offset = os.lseek(fd, 0, os.SEEK_CUR)
            count = max(0, os.fstat(fd).st_size - offset)
        except OSError:
            return False
        head = self._head(count if self.http else None)
        if self.cl is not None:
            count = min(count, self.cl)
        self.head_sent = True
        self._send(head)
        if self.head_only:
            return True
        out = self.sock.fileno()
        end = offset + count
        self.sendfile = True
        try:
            while offset < end:
                n = os.sendfile(out, fd, offset, min(end - offset, _SENDFILE_MAX))
                if n == 0:
                    break  # the file shrank
                offset += n
                self.sent += n
        except OSError as exc:
            self.broken = True
            raise ClientGone(f"sendfile to client failed: {exc}") from exc
        return True

    def _failed(self, exc: Exception, environ: dict[str, Any]) -> bool:
        """Answer or close after an exception; True when it counts as an app error."""
        self.keep = False
        req = f"{environ.get('REQUEST_METHOD', '-')} {environ.get('REQUEST_URI') or environ.get('PATH_INFO', '')}"
        if self.broken or isinstance(exc, ClientDisconnected):
            self.broken = True
            self.worker.log(f"{req}: {exc}")
            return False
        code = exc.status if isinstance(exc, ProtocolError) else 500
        if code == 500:
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            self.worker.log(f"error in {req}:\n{tb.rstrip()}")
        else:
            self.worker.log(f"{req}: {exc}")
        rule = self.worker.exception_rule
        if rule is not None and rule(exc):  # --reload-on-exception*: after this request
            self.worker.recycle_after_exception(exc)
        if not self.head_sent:
            self.head_sent = True
            self.code = code
            try:
                data = error_response(self.version, code)
                self.hsize = data.find(b"\r\n\r\n") + 4
                self.sock.sendall(data)
            except OSError:
                self.broken = True
        return code == 500


def linger_close(conn: socket.socket, limit: int = 1 << 20, timeout: float = 1.0) -> None:
    """Half-close, then drop what the client still sends (bounded), so an early
    answer (413, 400) is not destroyed by a reset when the socket closes."""
    try:
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(timeout)
        got = 0
        while got < limit:
            data = conn.recv(65536)
            if not data:
                return
            got += len(data)
    except OSError:
        pass
