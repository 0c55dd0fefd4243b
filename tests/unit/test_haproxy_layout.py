"""Slot assignment, pool growth, internal port ranges and the runtime sync plan (all pure)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from shipyard.drivers.haproxy.layout import (
    Layout,
    Policy,
    compact,
    initial_layout,
    kind_of,
    merge_ranges,
    parse_slot,
    plan_layout,
)
from shipyard.drivers.haproxy.view import (
    DUPLICATE,
    Current,
    Observed,
    as_current,
    desired,
    plan_sync,
    render_map,
)
from shipyard.errors import EdgeError
from shipyard.route.table import Backend, RoutingTable, Server

POLICY = Policy(spare=4, port_base=21000, port_limit=32768, port_block=64)


def web(name: str, port: int, *servers: Server, path: str | None = "/hz") -> Backend:
    return Backend(name, "http", port, (f"{name}.test",), path, f"{name}.test", servers)


def table(*backends: Backend) -> RoutingTable:
    return RoutingTable(tuple(backends))


def start(t: RoutingTable, policy: Policy = POLICY) -> Layout:
    return compact(plan_layout(initial_layout(policy), t, policy), t, policy)


# -- layout ------------------------------------------------------------------------------------


def test_kinds_and_slot_names() -> None:
    assert kind_of(web("a", 1)) == "h"
    assert kind_of(web("a", 1, path=None)) == "c"
    assert kind_of(Backend("d", "tcp", 1)) == "t"
    assert parse_slot("be_h12") == ("h", 12)
    assert parse_slot("be_h012") is None and parse_slot("be_x1") is None


def test_services_keep_their_slot_and_new_ones_take_the_lowest_free() -> None:
    first = start(table(web("a", 21000), web("b", 21001), Backend("d", "tcp", 21002)))
    assert first.slots == {"a": "be_h0", "b": "be_h1", "d": "be_t0"}
    assert first.pools == {"c": 4, "h": 6, "t": 5}  # used + max(spare, 25 %)
    later = plan_layout(first, table(web("b", 21001), web("c", 21003)), POLICY)
    assert later.slots == {"b": "be_h1", "c": "be_h2"}  # a's slot is not reused right away
    again = plan_layout(later, table(web("b", 21001), web("c", 21003), web("e", 21004)), POLICY)
    assert again.slots["e"] == "be_h0"  # released one step earlier: free now
    assert again.skeleton() == first.skeleton()  # no reload for any of it


def test_released_slot_is_reused_rather_than_growing() -> None:
    full = start(table(*(web(f"s{i}", 21000 + i) for i in range(4))), replace(POLICY, spare=1))
    assert full.size("h") == 5
    swap = table(*(web(f"s{i}", 21000 + i) for i in range(1, 6)))
    after = plan_layout(full, swap, replace(POLICY, spare=1))
    assert after.size("h") == 5 and after.slots["s5"] == "be_h0"


def test_kind_change_moves_the_service() -> None:
    first = start(table(web("a", 21000)))
    moved = plan_layout(first, table(web("a", 21000, path=None)), POLICY)
    assert moved.slots == {"a": "be_c0"}
    assert plan_layout(moved, table(Backend("a", "tcp", 21000)), POLICY).slots == {"a": "be_t0"}


def test_a_full_pool_grows_in_one_step() -> None:
    policy = replace(POLICY, spare=2)
    layout = start(table(web("a", 21000)), policy)
    assert layout.size("h") == 3
    grown = plan_layout(layout, table(*(web(f"s{i}", 21000 + i) for i in range(4))), policy)
    assert grown.size("h") == 6  # 4 needed + max(2, 1)
    many = plan_layout(layout, table(*(web(f"s{i}", 21000 + i) for i in range(40))), policy)
    assert many.size("h") == 50  # 40 + 25 %
    assert grown.skeleton() != layout.skeleton()


def test_ports_inside_the_region_need_no_config_change() -> None:
    assert initial_layout(POLICY).port_ranges() == ((21000, 21063),)
    layout = start(table(web("a", 21000)))
    assert layout.port_ranges() == ((21000, 21127),)  # at least a block free above the highest
    inside = plan_layout(layout, table(web("a", 21000), web("b", 21127)), POLICY)
    assert inside.port_ranges() == layout.port_ranges()
    beyond = plan_layout(layout, table(web("a", 21000), web("b", 21128)), POLICY)
    assert beyond.port_ranges() == ((21000, 21255),)


def test_ports_outside_the_region_are_bound_exactly_and_dropped_at_the_next_reload() -> None:
    layout = start(table(web("a", 21000), web("b", 40000), web("c", 40001), web("d", 5000)))
    assert layout.port_ranges() == ((5000, 5000), (21000, 21127), (40000, 40001))
    removed = plan_layout(layout, table(web("a", 21000), web("b", 40000)), POLICY)
    assert removed.extra_ports == (5000, 40000, 40001)  # unbinding needs a reload: not now
    assert compact(removed, table(web("a", 21000), web("b", 40000)), POLICY).extra_ports == (40000,)


def test_without_a_base_every_port_is_bound_exactly() -> None:
    policy = Policy(spare=4)
    layout = start(table(web("a", 40000), web("b", 40001), web("c", 40100)), policy)
    assert layout.port_ranges() == ((40000, 40001), (40100, 40100))
    assert initial_layout(policy).port_ranges() == ()


def test_region_is_capped_below_the_limit() -> None:
    policy = replace(POLICY, port_limit=21100)
    layout = start(table(web("a", 21090)), policy)
    assert layout.port_ranges() == ((21000, 21099),)


def test_compact_tops_up_pools() -> None:
    policy = replace(POLICY, spare=2)
    layout = start(table(web("a", 21000), web("b", 21001)), policy)
    assert layout.size("h") == 4
    three = table(web("a", 21000), web("b", 21001), web("c", 21002))
    planned = plan_layout(layout, three, policy)
    assert planned.size("h") == 4  # a spare is left: no growth yet
    assert compact(planned, three, policy).size("h") == 5  # but a reload restores the headroom


def test_layout_file_round_trip() -> None:
    layout = start(table(web("a", 21000), Backend("d", "tcp", 40000)))
    assert Layout.from_json(layout.to_json()) == layout
    with pytest.raises(EdgeError):
        Layout.from_json('{"version": 1, "pools": {"h": 1}, "slots": {"a": "be_h3"}}')
    with pytest.raises(EdgeError):
        Layout.from_json("not json")


def test_merge_ranges() -> None:
    assert merge_ranges([(5, 5), (1, 3), (4, 4), (10, 12), (11, 20)]) == ((1, 5), (10, 20))


# -- maps and sync plans -----------------------------------------------------------------------

A1 = Server("a1", "127.0.0.1", 9001)
A2 = Server("a2", "127.0.0.1", 9002)
B1 = Server("b1", "127.0.0.1", 9101)


def state_after(t: RoutingTable, layout: Layout) -> Current:
    return as_current(desired(t, layout))


def test_map_files_sort_ports_numerically() -> None:
    assert render_map({"9000": "be_t0", "10000": "be_h0"}) == "9000 be_t0\n10000 be_h0\n"


def test_adding_a_service_routes_it_only_once_its_servers_exist() -> None:
    before = table(web("a", 21000, A1))
    layout = start(table(web("a", 21000, A1), web("b", 21001, B1)))
    plan = plan_sync(state_after(before, layout), desired(before.__class__((*before.backends,
        web("b", 21001, B1))), layout))  # fmt: skip
    assert plan.check_maps == [("add", "health", "be_h1", "/hz"),
                               ("add", "checkhost", "be_h1", "b.test")]  # fmt: skip
    assert [(slot, s.name) for slot, s, _ in plan.adds] == [("be_h1", "b1")]
    assert plan.route_maps == [("add", "hosts", "b.test", "be_h1"),
                               ("add", "ports", "21001", "be_h1")]  # fmt: skip
    assert not plan.early_deletes and not plan.late_deletes
    assert plan.touched_slots() == {"be_h1"}


def test_removing_a_service_unroutes_it_before_deleting_servers() -> None:
    both = table(web("a", 21000, A1), web("b", 21001, B1))
    layout = start(both)
    after = plan_layout(layout, table(web("a", 21000, A1)), POLICY)
    plan = plan_sync(state_after(both, layout), desired(table(web("a", 21000, A1)), after))
    assert plan.route_maps == [("del", "hosts", "b.test", ""), ("del", "ports", "21001", "")]
    assert plan.late_deletes == [("be_h1", "b1")] and not plan.early_deletes
    assert plan.stale_check_maps == [("del", "health", "be_h1", ""),
                                     ("del", "checkhost", "be_h1", "")]  # fmt: skip


def test_rolling_deploy_adds_before_it_deletes_and_touches_no_map() -> None:
    layout = start(table(web("a", 21000, A1)))
    plan = plan_sync(state_after(table(web("a", 21000, A1)), layout),
                     desired(table(web("a", 21000, A2)), layout))  # fmt: skip
    assert [s.name for _, s, _ in plan.adds] == ["a2"] and plan.late_deletes == [("be_h0", "a1")]
    assert not plan.route_maps and not plan.check_maps


def test_states_addresses_domains_and_health_paths() -> None:
    layout = start(table(web("a", 21000, A1)))
    current = state_after(table(web("a", 21000, A1)), layout)
    drained = plan_sync(
        current, desired(table(web("a", 21000, replace(A1, state="drain"))), layout)
    )
    assert [(slot, s.state) for slot, s in drained.states] == [("be_h0", "drain")]
    moved = plan_sync(current, desired(table(web("a", 21000, replace(A1, port=9999))), layout))
    assert [(s.port, recreate) for _, s, recreate in moved.adds] == [(9999, True)]
    domain = replace(web("a", 21000, A1), public_hosts=("a.test", "www.a.test"))
    assert plan_sync(current, desired(table(domain), layout)).route_maps == [
        ("add", "hosts", "www.a.test", "be_h0")
    ]
    path = replace(web("a", 21000, A1), health_path="/ready")
    plan = plan_sync(current, desired(table(path), layout))
    assert plan.check_maps == [("set", "health", "be_h0", "/ready")] and not plan.adds


def test_a_reused_slot_is_emptied_before_it_is_routed() -> None:
    layout = start(table(web("a", 21000, A1)))
    # the runtime still holds a1 (a failed apply) while be_h0 now belongs to b
    current = Current({"be_h0": {"a1": Observed("127.0.0.1", 9001, "ready")}}, {})
    reused = replace(layout, slots={"b": "be_h0"})
    plan = plan_sync(current, desired(table(web("b", 21001, B1)), reused))
    assert plan.early_deletes == [("be_h0", "a1")] and not plan.late_deletes


def test_duplicate_map_keys_are_set_not_added() -> None:
    layout = start(table(web("a", 21000, A1)))
    want = desired(table(web("a", 21000, A1)), layout)
    maps = {**want.maps, "hosts": {"a.test": DUPLICATE}}
    plan = plan_sync(Current(as_current(want).servers, maps), want)
    assert plan.route_maps == [("set", "hosts", "a.test", "be_h0")]


def test_nothing_to_do_is_an_empty_plan() -> None:
    t = table(web("a", 21000, A1), Backend("d", "tcp", 21001, servers=(B1,)))
    layout = start(t)
    assert plan_sync(state_after(t, layout), desired(t, layout)).empty()
