"""Which calls ``drop_privileges`` makes for --uid/--gid (every os call faked: nothing
changes the test process's own credentials)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from brood import master_env
from brood.config.option import OptionError

USERS = {"app": SimpleNamespace(pw_uid=1001, pw_name="app", pw_gid=1001)}
GROUPS = {"web": SimpleNamespace(gr_gid=33, gr_name="web"),
          "app": SimpleNamespace(gr_gid=1001, gr_name="app")}


@pytest.fixture
def calls(monkeypatch):
    made: list[tuple] = []
    state = {"uid": 0, "gid": 0, "groups": [0]}

    def setgid(gid):
        made.append(("setgid", gid))
        state["gid"] = gid

    def setuid(uid):
        made.append(("setuid", uid))
        state["uid"] = uid

    def setgroups(groups):
        made.append(("setgroups", list(groups)))
        state["groups"] = list(groups)

    def initgroups(name, gid):
        made.append(("initgroups", name, gid))
        state["groups"] = [gid, 27] if name == "app" else [gid]

    fake_os = SimpleNamespace(getuid=lambda: state["uid"], getgid=lambda: state["gid"],
                              setgid=setgid, setuid=setuid, setgroups=setgroups,
                              initgroups=initgroups, getgroups=lambda: state["groups"])

    def getpwnam(name):
        return USERS[name]

    def getpwuid(uid):
        for entry in USERS.values():
            if entry.pw_uid == uid:
                return entry
        raise KeyError(uid)

    def getgrgid(gid):
        for entry in GROUPS.values():
            if entry.gr_gid == gid:
                return entry
        raise KeyError(gid)

    monkeypatch.setattr(master_env, "os", fake_os)
    monkeypatch.setattr(master_env, "pwd", SimpleNamespace(getpwnam=getpwnam,
                                                           getpwuid=getpwuid))
    monkeypatch.setattr(master_env, "grp", SimpleNamespace(
        getgrnam=lambda name: GROUPS[name], getgrgid=getgrgid))
    monkeypatch.setattr(master_env, "log", lambda message: made.append(("log", message)))
    return SimpleNamespace(made=made, state=state)


def _ops(calls):
    return [c for c in calls.made if c[0] != "log"]


def test_uid_without_gid_takes_the_users_groups(calls):
    master_env.drop_privileges("app", None)
    assert _ops(calls) == [("initgroups", "app", 1001), ("setuid", 1001)]
    assert calls.state["groups"] == [1001, 27] and calls.state["gid"] == 0  # as uWSGI
    assert ("log", "set additional group 27 (27)") in calls.made


def test_uid_and_gid_take_the_users_groups_on_that_gid(calls):
    master_env.drop_privileges("1001", "web")
    assert _ops(calls) == [("setgid", 33), ("initgroups", "app", 33), ("setuid", 1001)]


def test_gid_alone_is_the_only_group(calls):
    master_env.drop_privileges(None, "33")
    assert _ops(calls) == [("setgroups", [33]), ("setgid", 33)]


def test_a_uid_no_user_has_gets_no_supplementary_groups(calls):
    master_env.drop_privileges("4242", None)
    assert _ops(calls) == [("setgroups", []), ("setuid", 4242)]
    calls.made.clear()
    calls.state.update(uid=0)
    master_env.drop_privileges("4243", "33")
    assert _ops(calls) == [("setgid", 33), ("setgroups", [33]), ("setuid", 4243)]


def test_not_root_changes_no_groups(calls):
    calls.state.update(uid=1001, gid=1001)
    master_env.drop_privileges("app", None)
    assert _ops(calls) == []
    assert ("log", "setuid() to 1001") in calls.made


def test_unknown_names_are_refused(calls):
    with pytest.raises(OptionError, match="^--uid nobody-here: no such user$"):
        master_env.drop_privileges("nobody-here", None)
    with pytest.raises(OptionError, match="^--gid nogroup-here: no such group$"):
        master_env.drop_privileges(None, "nogroup-here")
    assert _ops(calls) == []


def test_a_reload_leaves_a_pidfile_that_names_it_alone(tmp_path, capfd):
    """After a re-exec (the same pid) under --uid, the root-written pidfile cannot be
    written again: one that names this pid is left as it is, one that cannot be written
    is logged, and neither stops the reload (it stopped the instance)."""
    pidfile = tmp_path / "brood.pid"
    pidfile.write_text(f"{master_env.os.getpid()}\n")
    master_env.os.utime(pidfile, ns=(1, 1))
    master_env.write_pidfile(str(pidfile), reload=True)
    assert pidfile.stat().st_mtime_ns == 1  # not written again
    unwritable = str(tmp_path / "gone" / "brood.pid")
    master_env.write_pidfile(unwritable, reload=True)
    assert f"--pidfile {unwritable}: cannot write: No such file or directory (after a " \
           "reload: left as it was)" in capfd.readouterr().err
    with pytest.raises(OptionError, match="cannot write"):
        master_env.write_pidfile(unwritable)  # at start it still stops everything


def test_unix_sockets_are_given_to_the_uid_and_gid(monkeypatch):
    monkeypatch.setattr(master_env.os, "geteuid", lambda: 0)
    assert master_env.socket_owner("65534", "65533") == (65534, 65533)
    assert master_env.socket_owner("65534", None) == (65534, -1)
    assert master_env.socket_owner(None, None) is None
    monkeypatch.setattr(master_env.os, "geteuid", lambda: 1000)
    assert master_env.socket_owner("65534", "65533") is None  # no root: nothing to give
