"""Balancers: uWSGI's wrr sequence exactly, the live tier, and each algorithm's promise."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brood.config.options.routers import ALGO_CHOICES
from brood.routers.balance import (
    ALGORITHMS,
    ConsistentHash,
    IpHash,
    LeastRef,
    PowerOfTwo,
    RoundRobin,
    ScriptedBalancer,
    WeightedLeastRef,
    WeightedRoundRobin,
    live_tier,
    make_balancer,
)
from brood.routers.node import Node

NOW = 1000.0


def names(balancer, nodes, count, **kw) -> list[str]:
    out = []
    for _ in range(count):
        node = balancer.pick(nodes, NOW, **kw)
        out.append(node.name if node else None)
    return out


# -- wrr: WIRE §2.8 ---------------------------------------------------------------------

def test_wrr_uwsgi_sequence_3_to_1() -> None:
    nodes = [Node("A", weight=3), Node("B", weight=1)]
    assert names(WeightedRoundRobin(), nodes, 8) == list("BAAABAAA")


def test_wrr_equal_weights_alternate_last_first() -> None:
    nodes = [Node("n1"), Node("n2")]
    assert names(WeightedRoundRobin(), nodes, 4) == ["n2", "n1", "n2", "n1"]


def test_wrr_refill_divides_by_min_weight_and_counts_on_nodes() -> None:
    nodes = [Node("A", weight=4), Node("B", weight=2), Node("C", weight=2)]
    balancer = WeightedRoundRobin()
    assert names(balancer, nodes, 4) == ["C", "A", "A", "B"]
    assert [n.wrr for n in nodes] == [0, 0, 0]
    assert names(balancer, nodes, 1) == ["C"]
    assert [n.wrr for n in nodes] == [2, 1, 0]


def test_wrr_skips_dead_and_refills_among_live_only() -> None:
    a, b, c = Node("A", weight=1), Node("B", weight=2), Node("C", weight=4)
    a.death_mark = True
    # min weight among live nodes is 2: B gets 1 credit, C gets 2; C (last) first.
    assert names(WeightedRoundRobin(), [a, b, c], 6) == ["C", "B", "C", "C", "B", "C"]
    assert a.wrr == 0


def test_wrr_exclude_does_not_spend_credit() -> None:
    a, b = Node("A", weight=3), Node("B", weight=1)
    balancer = WeightedRoundRobin()
    balancer.pick([a, b], NOW)  # B, credits A=3 B=0
    assert balancer.pick([a, b], NOW, exclude=[a]) is b  # refill among B only
    assert a.wrr == 3


# -- rr: uWSGI's static --X-to order ----------------------------------------------------

def test_rr_starts_with_first_and_rotates() -> None:
    nodes = [Node("A"), Node("B"), Node("C")]
    assert names(RoundRobin(), nodes, 5) == ["A", "B", "C", "A", "B"]


def test_rr_steps_over_graced_node_and_comes_back() -> None:
    nodes = [Node("A"), Node("B"), Node("C")]
    balancer = RoundRobin()
    nodes[1].mark_failed_connect(NOW, 30)
    assert names(balancer, nodes, 4) == ["A", "C", "A", "C"]
    assert balancer.pick(nodes, NOW + 31).name == "A"
    assert balancer.pick(nodes, NOW + 31).name == "B"


def test_rr_keeps_a_cursor_per_pool() -> None:
    balancer = RoundRobin()
    one, two = [Node("a1"), Node("a2")], [Node("b1"), Node("b2")]
    assert balancer.pick(one, NOW).name == "a1"
    assert balancer.pick(two, NOW).name == "b1"
    assert balancer.pick(one, NOW).name == "a2"


# -- least loaded -----------------------------------------------------------------------

def test_lrc_fewest_in_flight_ties_in_pool_order() -> None:
    nodes = [Node("A", ref=2), Node("B", ref=1), Node("C", ref=1)]
    assert LeastRef().pick(nodes, NOW).name == "B"
    nodes[1].ref = 5
    assert LeastRef().pick(nodes, NOW).name == "C"


def test_wlrc_divides_by_weight() -> None:
    nodes = [Node("A", ref=2, weight=1), Node("B", ref=3, weight=4)]
    assert WeightedLeastRef().pick(nodes, NOW).name == "B"
    assert LeastRef().pick(nodes, NOW).name == "A"


def test_p2c_is_deterministic_with_a_seeded_rng() -> None:
    nodes = [Node(f"n{i}") for i in range(5)]
    first = names(PowerOfTwo(random.Random(7)), nodes, 20)
    assert first == names(PowerOfTwo(random.Random(7)), nodes, 20)


def test_p2c_never_picks_the_busier_of_two() -> None:
    idle, busy = Node("idle"), Node("busy", ref=10)
    balancer = PowerOfTwo(random.Random(1))
    assert set(names(balancer, [busy, idle], 50)) == {"idle"}


def test_p2c_avoids_the_most_loaded_node() -> None:
    nodes = [Node(f"n{i}", ref=i) for i in range(4)]
    picks = names(PowerOfTwo(random.Random(3)), nodes, 400)
    assert "n3" not in picks  # it loses every comparison
    assert picks.count("n0") > picks.count("n1") > picks.count("n2")


# -- hashing ----------------------------------------------------------------------------

def test_iphash_stable_per_client_and_spreads() -> None:
    nodes = [Node(f"n{i}") for i in range(4)]
    balancer = IpHash()
    ips = [f"10.0.0.{i}".encode() for i in range(200)]
    first = {ip: balancer.pick(nodes, NOW, client=ip) for ip in ips}
    assert all(balancer.pick(nodes, NOW, client=ip) is first[ip] for ip in ips)
    assert len(set(first.values())) == 4


def test_iphash_graced_node_moves_only_its_clients() -> None:
    nodes = [Node(f"n{i}") for i in range(4)]
    balancer = IpHash()
    ips = [f"10.1.0.{i}".encode() for i in range(200)]
    before = {ip: balancer.pick(nodes, NOW, client=ip) for ip in ips}
    nodes[2].mark_failed_connect(NOW, 30)
    for ip in ips:
        after = balancer.pick(nodes, NOW, client=ip)
        assert after is not nodes[2]
        if before[ip] is not nodes[2]:
            assert after is before[ip]


def test_iphash_uses_key_without_client() -> None:
    nodes = [Node(f"n{i}") for i in range(8)]
    picks = {IpHash().pick(nodes, NOW, key=f"k{i}".encode()).name for i in range(64)}
    assert len(picks) > 1


def _chash_map(nodes, keys, balancer=None, **kw):
    balancer = balancer or ConsistentHash()
    return {k: balancer.pick(nodes, NOW, client=k, **kw).name for k in keys}


KEYS = [f"client-{i}".encode() for i in range(6000)]


def test_chash_join_moves_about_one_nth_and_only_to_the_new_node() -> None:
    nodes = [Node(f"10.0.0.{i}:3031") for i in range(10)]
    before = _chash_map(nodes, KEYS)
    joined = nodes + [Node("10.0.0.99:3031")]
    after = _chash_map(joined, KEYS)
    moved = [k for k in KEYS if before[k] != after[k]]
    assert all(after[k] == "10.0.0.99:3031" for k in moved)
    assert 0.04 < len(moved) / len(KEYS) < 0.16  # expected 1/11 ~ 0.09


def test_chash_leave_moves_only_the_leavers_keys() -> None:
    nodes = [Node(f"10.0.0.{i}:3031") for i in range(10)]
    before = _chash_map(nodes, KEYS)
    after = _chash_map(nodes[:4] + nodes[5:], KEYS)
    for k in KEYS:
        if before[k] != nodes[4].name:
            assert after[k] == before[k]
    share = sum(1 for k in KEYS if before[k] == nodes[4].name) / len(KEYS)
    assert 0.04 < share < 0.16


def test_chash_grace_and_exclude_move_only_that_nodes_keys() -> None:
    nodes = [Node(f"n{i}") for i in range(6)]
    balancer = ConsistentHash()
    before = _chash_map(nodes, KEYS[:2000], balancer)
    excluded = _chash_map(nodes, KEYS[:2000], balancer, exclude=[nodes[0]])
    for k, name in before.items():
        assert excluded[k] != "n0"
        if name != "n0":
            assert excluded[k] == name


def test_chash_balance_and_weights() -> None:
    nodes = [Node(f"n{i}") for i in range(5)] + [Node("heavy", weight=3)]
    counts: dict[str, int] = {}
    for name in _chash_map(nodes, KEYS).values():
        counts[name] = counts.get(name, 0) + 1
    unit = len(KEYS) / 8
    for i in range(5):
        assert 0.7 * unit < counts[f"n{i}"] < 1.3 * unit
    assert 2.3 * unit < counts["heavy"] < 3.7 * unit


# -- the live tier ----------------------------------------------------------------------

def test_live_tier_uses_lowest_backup_level_with_a_usable_node() -> None:
    main = [Node("m1"), Node("m2")]
    backup = [Node("b1", backup=1), Node("b2", backup=1)]
    last = [Node("z", backup=2)]
    pool = backup + main + last
    assert [n.name for n in live_tier(pool, NOW)] == ["m1", "m2"]
    main[0].death_mark = True
    main[1].mark_failed_connect(NOW, 30)
    assert [n.name for n in live_tier(pool, NOW)] == ["b1", "b2"]
    assert [n.name for n in live_tier(pool, NOW, exclude=backup)] == ["z"]
    assert [n.name for n in live_tier(pool, NOW + 31)] == ["m2"]


@pytest.mark.parametrize("algo", ALGORITHMS)
def test_every_algorithm_honours_backup_levels(algo: str) -> None:
    pool = [Node("b", backup=1), Node("m1"), Node("m2")]
    balancer = make_balancer(algo, rng=random.Random(0))
    picks = {balancer.pick(pool, NOW, client=f"c{i}".encode()).name for i in range(20)}
    assert picks <= {"m1", "m2"}
    pool[1].death_mark = pool[2].death_mark = True
    assert balancer.pick(pool, NOW, client=b"c").name == "b"


@pytest.mark.parametrize("algo", ALGORITHMS)
def test_every_algorithm_gives_none_when_all_in_grace(algo: str) -> None:
    pool = [Node("a"), Node("b")]
    for node in pool:
        node.mark_failed_connect(NOW, 30)
    balancer = make_balancer(algo)
    assert balancer.pick(pool, NOW, client=b"x") is None
    assert balancer.pick([], NOW) is None
    assert balancer.pick(pool, NOW + 30, client=b"x") is not None


node_sets = st.lists(
    st.tuples(st.integers(1, 5), st.integers(0, 2), st.booleans(), st.integers(0, 4),
              st.booleans()),
    min_size=0, max_size=8,
)


@settings(max_examples=150, deadline=None)
@given(spec=node_sets, algo=st.sampled_from(ALGORITHMS), client=st.binary(max_size=8),
       data=st.data())
def test_never_returns_excluded_unusable_or_higher_tier(spec, algo, client, data) -> None:
    pool = []
    for i, (weight, backup, dead, ref, graced) in enumerate(spec):
        node = Node(f"n{i}", weight=weight, backup=backup, death_mark=dead, ref=ref)
        if graced:
            node.mark_failed_connect(NOW, 10)
        pool.append(node)
    exclude = data.draw(st.lists(st.sampled_from(pool), unique=True) if pool else st.just([]))
    balancer = make_balancer(algo, rng=random.Random(0))
    for _ in range(3):
        chosen = balancer.pick(pool, NOW, client=client, exclude=exclude)
        tier = live_tier(pool, NOW, exclude)
        if not tier:
            assert chosen is None
        else:
            assert chosen in tier


def test_make_balancer_names() -> None:
    assert set(ALGORITHMS) == set(ALGO_CHOICES)
    assert isinstance(make_balancer(" WRR "), WeightedRoundRobin)
    with pytest.raises(ValueError, match="unknown balancing algorithm"):
        make_balancer("random")


def test_scripted_fake_follows_its_order() -> None:
    fake = ScriptedBalancer(["b", "a"])
    pool = [Node("a"), Node("b")]
    assert fake.pick(pool, NOW).name == "b"
    assert fake.pick(pool, NOW, exclude=[pool[1]]).name == "a"
    assert fake.picks == ["b", "a"]
