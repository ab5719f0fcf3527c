"""Sender credentials on unix subscription sockets (``--subscriptions-use-credentials``).

How it works (Linux). With ``SO_PASSCRED`` set on the *receiving* unix datagram
socket, the kernel attaches the sending process's pid and real uid and gid (a ``struct
ucred``, ``SCM_CREDENTIALS``) to every datagram written to it. The sender does nothing:
no ancillary data, no socket option. A sender may pass its own ``SCM_CREDENTIALS``
instead, but the kernel only lets it name itself (its pid, one of its own uids/gids)
unless it has CAP_SYS_ADMIN/CAP_SETUID/CAP_SETGID. So a node announcing to a unix
subscription socket, brood's announcer or uWSGI's, is identified without any change on
its side. The pid is the sender's process (thread group) id as seen from the
receiver's pid namespace: for a brood or uWSGI node, its master, which sends the
announces.

A datagram queued before ``SO_PASSCRED`` was set carries no sender; the kernel then
reports pid 0 (and the overflow uid/gid), which ``from_ancillary`` turns into None.
UDP subscription sockets have no such thing: the option leaves them alone.

``--subscriptions-sign-skip-uid UID`` (uWSGI's help: "skip the signature check for
the given uid when using unix socket credentials"): a packet whose SCM_CREDENTIALS uid
is listed is accepted without ``--subscriptions-sign-check``; without credentials no
uid is known and the list has no effect.
"""

from __future__ import annotations

import pwd
import socket
import struct
from collections.abc import Iterable

from brood.config.option import OptionError

# (pid, uid, gid) of the process that sent a datagram.
Creds = tuple[int, int, int]

# struct ucred: pid_t pid (signed), uid_t uid, gid_t gid (unsigned), native layout.
UCRED = struct.Struct("=iII")
# The ancillary buffer recvmsg needs for one ucred.
ANCILLARY_SIZE = socket.CMSG_SPACE(UCRED.size)


def enable(sock: socket.socket) -> bool:
    """Ask the kernel for the senders' credentials on ``sock``; False (and nothing
    done) when it is not a unix socket."""
    if sock.family != socket.AF_UNIX:
        return False
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    return True


def from_ancillary(ancdata: Iterable[tuple[int, int, bytes]]) -> Creds | None:
    """The sender's (pid, uid, gid) from ``recvmsg``'s ancillary data, or None when
    there is no ``SCM_CREDENTIALS`` message or it names no sender (pid 0)."""
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            if len(data) < UCRED.size:
                return None
            pid, uid, gid = UCRED.unpack_from(data)
            return (pid, uid, gid) if pid > 0 else None
    return None


def ancillary(creds: Creds) -> list[tuple[int, int, bytes]]:
    """``creds`` as the ancillary data ``recvmsg`` returns (the inverse of
    ``from_ancillary``, for tests and fakes)."""
    return [(socket.SOL_SOCKET, socket.SCM_CREDENTIALS, UCRED.pack(*creds))]


def parse_uids(values: Iterable[str], option: str = "subscriptions-sign-skip-uid"
               ) -> frozenset[int]:
    """``--subscriptions-sign-skip-uid`` values: numeric uids or user names."""
    uids: set[int] = set()
    for value in values:
        text = value.strip()
        if text.isdigit():
            uids.add(int(text))
            continue
        try:
            uids.add(pwd.getpwnam(text).pw_uid)
        except KeyError:
            raise OptionError(f"--{option} {value}: no such user") from None
    return frozenset(uids)


def skips_sign_check(creds: Creds | None, skip_uids: frozenset[int]) -> bool:
    """Whether a packet with ``creds`` is accepted without its signature check."""
    return creds is not None and creds[1] in skip_uids
