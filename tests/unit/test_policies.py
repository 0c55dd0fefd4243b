"""Pure decisions: restart backoff, rollback target, plan, stored-spec redaction, routing table."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from shipyard.blueprint.load import parse_blueprint
from shipyard.blueprint.spec import EnvVarDigest, ServiceSpec
from shipyard.clock import FakeClock
from shipyard.controlplane.db import Database
from shipyard.controlplane.secrets import SecretBox
from shipyard.controlplane.state import State
from shipyard.errors import Conflict, NotFound
from shipyard.plan.plan import make_plan
from shipyard.records import InstanceState, Release, ReleaseStatus, Service
from shipyard.release.retention import releases_to_prune
from shipyard.rollout.choose import rollback_target
from shipyard.rollout.execute import target_count
from shipyard.route.desired import desired_table
from shipyard.run.backoff import RestartPolicy
from shipyard.settings import Settings


@pytest.mark.parametrize(
    ("crashes", "now", "delay", "looping"),
    [
        ((100.0,), 100.0, 1.0, False),
        ((100.0, 101.0), 101.0, 2.0, False),
        ((100.0, 101.0, 103.0), 103.0, 4.0, True),
        (tuple(float(i) for i in range(20)), 20.0, 300.0, True),  # capped at 5 minutes
        ((0.0, 1.0, 1000.0), 1000.0, 1.0, False),  # old crashes fall out of the window
    ],
)
def test_restart_backoff(
    crashes: tuple[float, ...], now: float, delay: float, looping: bool
) -> None:
    policy = RestartPolicy()
    assert policy.delay(crashes, now) == delay
    assert policy.crash_looping(crashes, now) is looping


SPEC = ServiceSpec(name="web", type="web", runtime="node", start_command="node s.js")


def rel(
    number: int, status: str, reason: str = "", deployable: bool = True, pruned: bool = False
) -> Release:
    return Release(
        service="web", number=number, status=ReleaseStatus(status), reason=reason,
        created_at=0.0, finished_at=None, live_at=None, config_digest="", git_commit="",
        git_branch="", source="", dir="", spec=SPEC, env_enc=b"", deploy_id=None,
        deployable=deployable, pruned=pruned,
    )  # fmt: skip


RELEASES = [
    rel(1, "superseded"),
    rel(2, "build-failed", "build command exited with code 1", deployable=False),
    rel(3, "superseded"),
    rel(4, "rolled-back"),
    rel(5, "failed", "did not become healthy"),
    rel(6, "live"),
    rel(7, "failed", "preDeployCommand exited with code 1", deployable=False),
]


def test_rollback_default_skips_failed_and_rolled_back() -> None:
    assert rollback_target(RELEASES, 6, None) == 3
    assert rollback_target(RELEASES, 3, None) == 1


@pytest.mark.parametrize(
    ("to", "error", "text"),
    [
        (9, NotFound, "Release 9 does not exist"),
        (6, Conflict, "already the live release"),
        (2, Conflict, "never got past its build"),
        (7, Conflict, "preDeployCommand exited"),
    ],
)
def test_rollback_to_rejects(to: int, error: type[Exception], text: str) -> None:
    with pytest.raises(error, match=text):
        rollback_target(RELEASES, 6, to)


def test_rollback_without_history() -> None:
    with pytest.raises(Conflict, match="No earlier good release"):
        rollback_target([rel(1, "live")], 1, None)
    assert rollback_target(RELEASES, 6, 4) == 4


BP = """
services:
  - type: web
    name: web
    runtime: node
    startCommand: node server.js
    envVars:
      - {key: TOKEN, value: hunter2}
  - type: worker
    name: jobs
    runtime: python
    startCommand: python3 w.py
"""


def test_plan_create_update_redeploy_orphan_and_type_change(tmp_path: Path) -> None:
    loaded = parse_blueprint(BP, filename="render.yaml", kind="render")
    box = SecretBox(tmp_path / "key")
    specs = {s.name: s.stored(box.digest) for s in loaded.services}
    token = specs["web"].env_digests[0]
    changed = replace(specs["web"], env_digests=(EnvVarDigest(token.key, token.kind, "other"),))
    plan = make_plan(
        loaded.services, specs, {"web": changed}, {"web": "web", "old": "web"}, ["web", "old"]
    )
    assert [(s.service, s.action, s.changes) for s in plan.steps] == [
        ("web", "update", ("envVars",)),
        ("jobs", "create", ()),
    ]
    assert plan.orphans == ("old",)
    same = make_plan(loaded.services, specs, {"web": specs["web"]}, {"jobs": "pserv"})
    assert same.steps[0].action == "redeploy"
    assert "is a pserv in Shipyard and a worker in the Blueprint" in same.problems[0]


def test_stored_spec_never_holds_env_values(tmp_path: Path) -> None:
    loaded = parse_blueprint(BP, filename="render.yaml", kind="render")
    box = SecretBox(tmp_path / "key")
    stored = loaded.service("web").stored(box.digest)
    other = loaded.service("web").stored(SecretBox(tmp_path / "other-key").digest)
    # keyed: the same value digests differently under another key (no dictionary attack)
    assert stored.env_digests[0].digest != other.env_digests[0].digest
    assert "hunter2" not in stored.to_json() and stored.env_vars == ()
    assert "hunter2" not in stored.config_digest() and stored.config_digest() != (
        loaded.service("web").config_digest()
    )
    assert (stored.env_digests[0].key, stored.env_digests[0].kind) == ("TOKEN", "value")
    assert ServiceSpec.from_json(stored.to_json()) == stored
    assert stored.env_keys == ["TOKEN"]


def test_specs_stored_before_typed_state_still_load() -> None:
    legacy = json.loads(SPEC.to_json())
    legacy["env_vars"] = [{"key": "TOKEN", "kind": "value", "digest": "abc"}]
    loaded = ServiceSpec.from_json(json.dumps(legacy))
    assert loaded.env_vars == () and loaded.env_digests == (EnvVarDigest("TOKEN", "value", "abc"),)


def test_routing_table_from_state(tmp_path: Path) -> None:
    clock = FakeClock()
    state = State(Database(tmp_path / "s.db"), clock)
    settings = Settings(home=tmp_path, http_port=9000)
    web_spec = replace(SPEC, domains=("a.example",), health_check_path="/up")
    state.register_service("web", "web", web_spec, "bp", 2, 7001)
    state.register_service("api", "pserv", replace(SPEC, name="api", type="pserv"), "bp", 1, 7002)
    state.register_service(
        "jobs", "worker", replace(SPEC, name="jobs", type="worker"), "bp", 1, None
    )
    for inst, svc, port, st in [
        ("w1", "web", 7101, InstanceState.RUNNING),
        ("w2", "web", 7102, InstanceState.DRAINING),
        ("w3", "web", 7103, InstanceState.STARTING),
        ("a1", "api", 7201, InstanceState.CRASHED),
    ]:
        state.add_instance(inst, svc, 1, port, "log")
        state.update_instance(inst, state=st)
    table = desired_table(state, settings)
    web = table.backend("web")
    assert web is not None and web.mode == "http"
    assert web.public_hosts == ("web.localhost", "a.example")
    assert web.health_path == "/up" and web.health_host == "web.localhost"
    assert [(s.name, s.port, s.state) for s in web.servers] == [
        ("w1", 7101, "ready"),
        ("w2", 7102, "drain"),
    ]
    api = table.backend("api")
    assert api is not None and api.mode == "tcp" and api.public_hosts == () and api.servers == ()
    assert table.backend("jobs") is None


@pytest.mark.parametrize(
    ("current", "desired", "blueprint", "spec_count", "from_blueprint", "expected"),
    [
        (None, 2, 2, 2, True, 2),  # first deploy: the Blueprint's count
        (1, 5, 2, 2, True, 5),  # manual scale survives a redeploy with the same numInstances
        (1, 5, 2, 3, True, 3),  # ... until the Blueprint's numInstances changes
        (1, 5, 2, 3, False, 5),  # a rollback never changes the count
    ],
)
def test_target_count(
    current: int | None,
    desired: int,
    blueprint: int,
    spec_count: int,
    from_blueprint: bool,
    expected: int,
) -> None:
    svc = Service(
        name="web", type="web", spec=SPEC, blueprint_path="bp", desired_instances=desired,
        blueprint_instances=blueprint, internal_port=None, current_release=current,
        created_at=0.0, updated_at=0.0,
    )  # fmt: skip
    assert target_count(svc, replace(SPEC, num_instances=spec_count), from_blueprint) == expected


def test_registering_an_existing_service_keeps_its_live_spec(tmp_path: Path) -> None:
    state = State(Database(tmp_path / "s.db"), FakeClock())
    state.register_service("web", "web", replace(SPEC, health_check_path="/up"), "bp", 2, 7001)
    state.register_service("web", "web", replace(SPEC, health_check_path="/x"), "bp2", 4, 7009)
    svc = state.service("web")
    assert svc.spec.health_check_path == "/up"
    assert (svc.desired_instances, svc.internal_port, svc.blueprint_path) == (2, 7001, "bp2")
    state.add_release(
        service="web", number=1, config_digest="d", git_commit="", git_branch="", source="s",
        dir="d", spec=SPEC, env_enc=b"", deploy_id=None,
    )  # fmt: skip
    state.promote("web", 1, ReleaseStatus.SUPERSEDED, replace(SPEC, num_instances=4), desired=4)
    svc = state.service("web")
    assert (svc.desired_instances, svc.blueprint_instances, svc.current_release) == (4, 4, 1)
    assert svc.spec.num_instances == 4
    assert state.release("web", 1).status == "live"


def test_retention_keeps_the_newest_deployable_releases_before_the_live_one() -> None:
    rows = [rel(n, "superseded", deployable=n != 4, pruned=n == 1) for n in range(1, 16)]
    # live = 14; 15 is newer (a deploy in progress): kept. Before 14: deployable 13..5 and 3
    # are the newest ten; 4 (never deployable) and 2 go; 1 is already pruned.
    assert releases_to_prune(rows, 14) == [4, 2]
    assert releases_to_prune(rows, None) == []


def test_source_copy_skips_a_shipyard_home_inside_the_tree(tmp_path: Path) -> None:
    from shipyard.source.snapshot import copy_tree

    src = tmp_path / "repo"
    (src / "app").mkdir(parents=True)
    (src / "app" / "main.py").write_text("print(1)")
    (src / ".git").mkdir()
    (src / "home" / "services").mkdir(parents=True)
    copy_tree(src, tmp_path / "copy", exclude=src / "home")
    assert (tmp_path / "copy" / "app" / "main.py").read_text() == "print(1)"
    assert not (tmp_path / "copy" / "home").exists()
    assert not (tmp_path / "copy" / ".git").exists()
