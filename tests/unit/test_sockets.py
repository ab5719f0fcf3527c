"""Address parsing and binding as uWSGI reads socket option values."""

from __future__ import annotations

import os
import socket

import pytest

from brood.config.option import OptionError
from brood.sockets import (
    Address,
    address_family_label,
    adopt_fd,
    bind_datagram,
    bind_listener,
    parse_address,
    socket_name,
    unix_path,
    written_name,
)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("127.0.0.1:3031", Address("tcp", host="127.0.0.1", port=3031)),
        (":3031", Address("tcp", host="0.0.0.0", port=3031)),
        ("localhost:0", Address("tcp", host="localhost", port=0)),
        ("[::1]:8080", Address("tcp", host="::1", port=8080, ipv6=True)),
        ("/tmp/app.sock", Address("unix", path="/tmp/app.sock")),
        ("app.sock", Address("unix", path="app.sock")),
        ("@brood-test", Address("abstract", path="brood-test")),
        ("=0", Address("shared", number=0)),
        ("=12", Address("shared", number=12)),
        ("fd://3", Address("fd", number=3)),
    ],
)
def test_parse_address_forms(spec: str, expected: Address) -> None:
    assert parse_address(spec) == expected


@pytest.mark.parametrize(
    "spec",
    ["", "127.0.0.1:http", "127.0.0.1:70000", "[::1]", "[::1]8080", "::1:80", "=x", "=",
     "fd://", "fd://three", "@"],
)
def test_bad_addresses_name_the_option(spec: str) -> None:
    with pytest.raises(OptionError, match=r"^--http-socket"):
        parse_address(spec, option="http-socket")


def test_tcp_port_zero_reports_the_real_port() -> None:
    lst = bind_listener("127.0.0.1:0", "uwsgi", backlog=10)
    try:
        host, port = lst.sock.getsockname()
        assert port != 0
        assert lst.name == f"127.0.0.1:{port}" == socket_name(lst.sock)
        assert lst.proto == "uwsgi"
        assert not lst.sock.get_inheritable()
        assert lst.sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
    finally:
        lst.sock.close()


@pytest.mark.parametrize("host", ["", "0.0.0.0", "127.0.0.1", "localhost"])
def test_tcp_name_keeps_the_host_as_written(host: str) -> None:
    # uWSGI names ":N" ":N" (not "0.0.0.0:N") and "localhost:N" "localhost:N": the
    # rawrouter's key, the stats lists and the announces use that name. (Tests bind on
    # loopback only: the name comes from what was written, and the port bound.)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        assert written_name(f"{host}:0", parse_address(f"{host}:0"), sock) == f"{host}:{port}"
        assert written_name(f"{host}:{port}", parse_address(f"{host}:{port}"), sock) \
            == f"{host}:{port}"
    lst = bind_listener("localhost:0", "rawrouter")
    try:
        assert lst.name == f"localhost:{lst.sock.getsockname()[1]}" == socket_name(lst.sock)
    finally:
        lst.sock.close()


def test_given_port_is_kept() -> None:
    with socket.socket() as probe:  # a port free right now, for a written non-zero port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    lst = bind_listener(f"localhost:{port}", "http")
    try:
        assert lst.name == f"localhost:{port}"
    finally:
        lst.sock.close()


def test_inherited_socket_keeps_its_written_name(tmp_path) -> None:
    # Across the master's re-exec the fd comes back with its spec: ":0" must still be
    # ":N", not the kernel's address (a reload would change the rawrouter's key).
    lst = bind_listener("127.0.0.1:0", "rawrouter")
    adopted = adopt_fd(os.dup(lst.fileno()), ":0", "rawrouter")
    path = str(tmp_path / "app.sock")
    unix = bind_listener(path, "uwsgi")
    mismatched = adopt_fd(os.dup(unix.fileno()), ":3031")  # the fd is what it is
    try:
        assert socket_name(adopted) == f":{lst.sock.getsockname()[1]}"
        assert socket_name(mismatched) == path
    finally:
        for sock in (adopted, lst.sock, mismatched, unix.sock):
            sock.close()


def _ipv6_listener(spec: str):
    """``bind_listener(spec)``, or a skip where this machine has no such IPv6 address."""
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        return bind_listener(spec, "http")
    except OptionError:
        pytest.skip(f"{spec} not configured")


def test_the_ipv6_wildcard_takes_ipv4_clients_too() -> None:
    """As uWSGI's [::]:PORT (the system's dual stack): 127.0.0.1 connects."""
    lst = _ipv6_listener("[::]:0")
    with lst.sock, socket.create_connection(("127.0.0.1", lst.sock.getsockname()[1]),
                                            timeout=5):
        pass


def test_ipv6_name_is_bracketed_with_the_real_port_and_labelled_tcp6() -> None:
    lst = _ipv6_listener("[::1]:0")
    try:
        assert lst.name == f"[::1]:{lst.sock.getsockname()[1]}"
        assert address_family_label(lst.sock) == "TCP6"  # uWSGI: "bound to TCP6 address"
    finally:
        lst.sock.close()


def test_unix_socket_and_stale_file(tmp_path) -> None:
    path = str(tmp_path / "app.sock")
    first = bind_listener(path, "uwsgi")
    assert first.name == path and unix_path(first) == path
    # A live listener is refused, not stolen.
    with pytest.raises(OptionError, match="already in use"):
        bind_listener(path, "uwsgi")
    first.sock.close()
    # The file left behind by a dead listener is stale: removed and bound again.
    assert os.path.exists(path)
    second = bind_listener(path, "uwsgi")
    second.sock.close()


def test_unix_path_that_is_a_regular_file_is_an_error(tmp_path) -> None:
    path = tmp_path / "not-a-socket"
    path.write_text("data")
    with pytest.raises(OptionError, match="not a socket"):
        bind_listener(str(path), "uwsgi", option="socket")


def test_abstract_socket_name() -> None:
    name = f"@brood-test-{os.getpid()}"
    lst = bind_listener(name, "uwsgi")
    try:
        assert lst.name == name
        assert unix_path(lst) is None
        client = socket.socket(socket.AF_UNIX)
        client.connect("\0" + name[1:])
        client.close()
    finally:
        lst.sock.close()


def test_fd_adoption() -> None:
    base = socket.socket()
    base.bind(("127.0.0.1", 0))
    base.listen(5)
    dup = os.dup(base.fileno())
    lst = bind_listener(f"fd://{dup}", "http")
    try:
        assert lst.name == socket_name(base)
        assert lst.fileno() == dup
    finally:
        lst.sock.close()
        base.close()


def test_shared_reference_is_not_bindable() -> None:
    with pytest.raises(OptionError, match="resolved by the plan"):
        bind_listener("=0", "uwsgi")


def test_bind_failure_names_option_and_address() -> None:
    taken = bind_listener("127.0.0.1:0", "uwsgi")
    try:
        with pytest.raises(OptionError, match=rf"^--socket {taken.name}: cannot bind"):
            # No SO_REUSEPORT on either: the second bind must fail.
            bind_listener(taken.name, "uwsgi")
    finally:
        taken.sock.close()


def test_datagram_name_as_written() -> None:
    # A subscription server on "localhost:N" is named so (uWSGI: "bound on localhost:N").
    udp = bind_datagram("localhost:0", "rawrouter-subscription-server")
    try:
        assert socket_name(udp) == f"localhost:{udp.getsockname()[1]}"
    finally:
        udp.close()


def test_datagram_sockets(tmp_path) -> None:
    udp = bind_datagram("127.0.0.1:0")
    try:
        assert udp.type == socket.SOCK_DGRAM and socket_name(udp).startswith("127.0.0.1:")
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sender.sendto(b"ping", udp.getsockname())
        sender.close()
        assert udp.recv(10) == b"ping"
    finally:
        udp.close()
    path = str(tmp_path / "sub.sock")
    dgram = bind_datagram(path)
    try:
        assert dgram.family == socket.AF_UNIX and socket_name(dgram) == path
    finally:
        dgram.close()


def test_datagram_path_replaces_a_socket_file_never_another_file(tmp_path) -> None:
    """A subscription server's path typed over a file deleted that file."""
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    with pytest.raises(OptionError, match="exists and is not a socket"):
        bind_datagram(str(precious), "http-subscription-server")
    assert precious.read_text() == "keep me"
    path = str(tmp_path / "sub.sock")
    bind_datagram(path).close()  # the last incarnation's file, left behind
    bind_datagram(path).close()
