"""The shared engine: retries bounded by max-retries, counters, harakiri, cheap mode,
graceful drain."""

from __future__ import annotations

from functools import partial

import pytest
import trio
import trio.testing
from _routerkit import (
    ANSWER,
    DictResolver,
    bind_listener,
    connect,
    read_all,
    refused_address,
    send_all,
    uwsgi_backend,
)

from brood.config.model import Config
from brood.routers.engine import Engine, RouterSettings
from brood.routers.errors import NodeFailed, NoNode
from brood.routers.process import serve_router


@pytest.mark.parametrize("max_retries, ok", [(1, False), (2, True)])
async def test_max_retries_bounds_next_nodes(max_retries, ok):
    async with trio.open_nursery() as nursery:
        backend = await nursery.start(uwsgi_backend)
        resolver = DictResolver({b"k": [refused_address(), refused_address(), backend.address]})
        engine = Engine(RouterSettings("fastrouter", max_retries=max_retries), resolver)
        if ok:
            async with await engine.connect(b"k") as upstream:
                assert upstream.node.name == backend.address
                assert upstream.node.ref == 1
            assert upstream.node.ref == 0 and upstream.node.requests == 1
        else:
            with pytest.raises(NodeFailed):
                await engine.connect(b"k")
        nursery.cancel_scope.cancel()
    assert [n.failcnt for n in resolver.nodes[b"k"][:2]] == [1, 1]


async def test_no_node_and_no_key():
    engine = Engine(RouterSettings("fastrouter"), DictResolver({}))
    with pytest.raises(NoNode):
        await engine.connect(b"nothing")
    with pytest.raises(NoNode):
        await engine.connect(None)


async def test_harakiri_cuts_long_sessions(autojump_clock):
    engine = Engine(RouterSettings("rawrouter", max_age=5), DictResolver({}))
    async with engine.session() as scope:
        assert engine.active_sessions == 1
        await trio.sleep(100)
    assert scope.cancelled_caught
    assert trio.current_time() == pytest.approx(5)
    assert engine.active_sessions == 0


async def test_cheap_mode_waits_for_nodes():
    engine = Engine(RouterSettings("fastrouter", cheap=True), DictResolver({}),
                    has_nodes=False)
    assert engine.cheap
    done = trio.Event()

    async def accept_side():
        await engine.wait_serving()
        done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(accept_side)
        await trio.testing.wait_all_tasks_blocked()
        assert not done.is_set()
        engine.nodes_changed(True)
        await done.wait()
    assert not engine.cheap


async def test_graceful_drain_lets_sessions_finish():
    async with trio.open_nursery() as nursery:
        backend = await nursery.start(uwsgi_backend)
        listener = bind_listener("fastrouter")
        resolver = DictResolver({b"a": [backend.address]})
        engine = Engine(RouterSettings("fastrouter"), resolver)
        server = await nursery.start(partial(serve_router, "fastrouter", Config(), [listener],
                                             engine=engine))
        from test_fastrouter import request

        data = request(b"a", body=b"0123456789")
        sock = await connect(listener.name)
        with sock:
            await send_all(sock, data[:-4])
            await trio.testing.wait_all_tasks_blocked(cushion=0.05)
            assert engine.active_sessions == 1
            server.stop_accepting()  # new clients are refused from here on...
            await send_all(sock, data[-4:])  # ...but the open session completes
            assert await read_all(sock) == ANSWER
        assert await server.drain(5)
        nursery.cancel_scope.cancel()


def test_stats_list_the_static_nodes_not_the_fallbacks():
    """As uWSGI's static_nodes: the --X-to nodes only."""
    from brood.routers.process import build_engine

    cfg = Config.from_dict({"fastrouter-to": ["127.0.0.1:1"],
                            "fastrouter-fallback": ["127.0.0.1:2"]})
    engine = build_engine("fastrouter", cfg)
    assert [n.name for n in engine.static_nodes()] == ["127.0.0.1:1"]
    assert [n.name for n in build_engine("fastrouter", Config.from_dict(
        {"fastrouter-use-pattern": "127.0.0.1:%s", "fastrouter-fallback": ["127.0.0.1:2"]}
    )).static_nodes()] == []


@pytest.mark.parametrize("given, read", [(0, 3), (1, 1), (5, 5)])
def test_max_retries_zero_is_the_default_as_in_uwsgi(given, read) -> None:
    """Real uWSGI 2.0 with --rawrouter-max-retries 0 tries 4 nodes: 0 is "not set"."""
    cfg = Config([("rawrouter", "127.0.0.1:0"), ("rawrouter-max-retries", given)])
    assert RouterSettings.from_config(cfg, "rawrouter").max_retries == read
