"""Operations on services: deploy a Blueprint, roll back, scale, converge.

Each operation is validated synchronously (bad input changes nothing, invariant 4), recorded as a
row in ``deploys``, then run in a background thread that emits progress events. One operation at
a time per service (a second one gets Conflict naming the first).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from shipyard.apimodels import DeployAccepted, PlanView, RollbackAccepted, ScaleAccepted
from shipyard.blueprint.load import LoadedBlueprint
from shipyard.blueprint.refs import dependency_waves
from shipyard.blueprint.spec import DatastoreSpec, ServiceSpec
from shipyard.builds.build import BuildRequest, build_release
from shipyard.builds.cache import clear_build_cache
from shipyard.clock import poll_while
from shipyard.context import Context, Emit
from shipyard.controlplane.outcomes import durably, explain
from shipyard.controlplane.prune import prune_service
from shipyard.controlplane.views import plan_view
from shipyard.data import lifecycle
from shipyard.data.backups import run_backup
from shipyard.errors import (
    Conflict,
    DeployFailed,
    EdgeError,
    NotFound,
    ShipyardError,
    UsageError,
)
from shipyard.plan.plan import Plan, make_plan, plan_datastores
from shipyard.records import (
    OperationKind,
    OperationStatus,
    Release,
    ReleaseStatus,
    Service,
    ServiceOutcome,
)
from shipyard.release.env import missing_sync_keys, resolve_service_env
from shipyard.release.store import artifact
from shipyard.rollout.choose import rollback_target
from shipyard.rollout.cron import release_cron
from shipyard.rollout.execute import fail_unfinished_releases, rollout
from shipyard.rollout.predeploy import run_pre_deploy
from shipyard.route.desired import allocate_internal_port, desired_table, platform
from shipyard.run.claims import Claims
from shipyard.run.scale import scale_to
from shipyard.source.open import Source, open_source, source_from_text

log = logging.getLogger("shipyard.engine")
OK = ServiceOutcome("ok")


def _references(spec: ServiceSpec) -> list[tuple[str, str]]:
    """(what, name) of each datastore ``spec`` reads connection details of: fromDatabase, and
    fromService of a Key Value instance."""
    refs = [("database", e.from_database[0]) for e in spec.env_vars if e.from_database]
    refs += [("Key Value", e.from_service.name) for e in spec.env_vars
             if e.from_service and e.from_service.type == "keyvalue"]  # fmt: skip
    return list(dict.fromkeys(refs))


def _datastores_used(spec: ServiceSpec) -> set[str]:
    return {name for _, name in _references(spec)}


class Engine:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.claims = Claims()
        self.closing = False  # set by `down`: no new operation starts
        # told where each deployed service comes from (controlplane/triggerops.py)
        self.on_register: Callable[[Source, list[str]], None] | None = None
        self._clean: set[tuple[int, str]] = set()  # (deploy, service) of --clear-cache builds

    # locking -----------------------------------------------------------------------------
    def busy(self, service: str) -> bool:
        return self.claims.busy(service)

    def claim_names(self) -> list[str]:
        """Every claim an operation can hold: services, disks, datastores and their work."""
        names = [s.name for s in self.ctx.state.services()]
        names += [f"disk:{s.name}" for s in self.ctx.state.services() if s.spec.disk]
        names += [key(d.name) for d in lifecycle.live(self.ctx)
                  for key in (lifecycle.claim_key, lifecycle.work_key)]  # fmt: skip
        return names

    def claim_all(self, owner: str, timeout_s: float) -> list[str]:
        """Claim every service, datastore and disk, waiting for running operations (deploys,
        backups, restores, drills, snapshots, restarts) to finish, up to the timeout. Returns
        the claims held."""
        names = self.claim_names()
        held: list[str] = []

        def missing() -> list[str]:
            held.extend(n for n in names if n not in held and self.claims.try_claim(n, owner))
            return [n for n in names if n not in held]

        poll_while(self.ctx.clock, missing, bool, timeout_s=timeout_s, interval_s=0.2)
        return held

    def open_operation(self, kind: OperationKind, target: str, claims: list[str]) -> int:
        """Claim and record an operation (for operations defined beside the engine)."""
        return self._open(kind, target, claims)

    def free_claims(self, claims: list[str], deploy_id: int) -> None:
        self._free(claims, deploy_id)

    def spawn_one(
        self, deploy_id: int, service: str, emit: Emit, action: Callable[[], None],
        success: ServiceOutcome,
    ) -> None:  # fmt: skip
        self._spawn_one(deploy_id, service, emit, action, success)

    def _open(self, kind: OperationKind, target: str, services: list[str]) -> int:
        """Claim the services, then record the operation: a refused operation (busy, shutting
        down) leaves no trace."""
        if self.closing:
            raise Conflict("Shipyard is shutting down; start it again with `shipyard up`.")
        pending = f"a {kind} being submitted ({threading.get_ident()})"
        self.claims.claim(services, pending)
        try:
            deploy_id = self.ctx.state.add_deploy(kind, target)
        except BaseException:
            self.claims.free(services, pending)
            raise
        self.claims.relabel(services, pending, f"operation #{deploy_id}")
        return deploy_id

    def _free(self, services: list[str], deploy_id: int) -> None:
        self.claims.free(services, f"operation #{deploy_id}")

    def _spawn(
        self, deploy_id: int, services: list[str], work: Callable[[], dict[str, ServiceOutcome]]
    ) -> None:
        def run() -> None:
            try:
                result = work()
                failed = [n for n, r in result.items() if r.status != "ok"]
                error = "; ".join(f"{n}: {result[n].error}" for n in failed)
                code = (result[failed[0]].code or ShipyardError.code) if failed else ""
                status = OperationStatus.FAILED if failed else OperationStatus.SUCCEEDED
                durably(self.ctx, lambda: self.ctx.state.finish_deploy(deploy_id, status, error,
                                                                  result, code))  # fmt: skip
            except Exception as exc:  # report, never kill the daemon
                log.exception("operation %s crashed", deploy_id)
                self._record_crash(deploy_id, explain(self.ctx, exc))
            finally:
                self._free(services, deploy_id)

        threading.Thread(target=run, name=f"op-{deploy_id}", daemon=True).start()

    def _record_crash(self, deploy_id: int, error: ShipyardError) -> None:
        state = self.ctx.state
        durably(self.ctx, lambda: state.add_event(deploy_id, error.message, level="error"))
        durably(self.ctx, lambda: state.finish_deploy(deploy_id, OperationStatus.FAILED,
                                                      error.message, {}, error.code))  # fmt: skip

    def emitter(self, deploy_id: int, service: str) -> Emit:
        def emit(message: str, level: str = "info") -> None:
            self.ctx.state.add_event(deploy_id, message, service=service, level=level)

        return emit

    # source & plan ---------------------------------------------------------------------------
    def open_source(self, blueprint: str | None, repo: str | None, branch: str | None) -> Source:
        cfg = self.ctx.settings
        return open_source(blueprint, repo, branch, cfg.home / "tmp",
                           allowed=cfg.source_dir_allowed, limits=cfg.blueprint_limits)  # fmt: skip

    def plan_for(self, source: Source, adopt: bool = False) -> Plan:
        loaded = source.loaded
        live: dict[str, ServiceSpec] = {}
        known: dict[str, str] = {}
        from_blueprint = []
        owners: dict[str, str] = {}
        for svc in self.ctx.state.services():
            known[svc.name] = svc.type
            owners[svc.name] = svc.blueprint_path
            if svc.deployed:
                live[svc.name] = svc.spec
            if svc.blueprint_path == source.blueprint_id:
                from_blueprint.append(svc.name)
        takeovers = [
            f"service '{s.name}' belongs to another Blueprint ({owners[s.name]}): deploying "
            "this one would take it over; deploy with --adopt to do so"
            for s in loaded.services
            if owners.get(s.name) and owners[s.name] != source.blueprint_id and not adopt
        ]
        specs = {s.name: s.stored(self.ctx.box.digest) for s in loaded.services}
        plan = make_plan(loaded.services, specs, live, known, from_blueprint)
        problem = self._edge_problem(loaded, specs)
        stores = lifecycle.live(self.ctx)
        data = plan_datastores(
            loaded.datastores,
            {d.name: (d.spec, d.version) for d in stores},
            [d.name for d in stores if d.blueprint_path == source.blueprint_id],
        )
        problems = [*plan.problems, *takeovers, *([problem] if problem else []), *data.problems]
        for service in loaded.services:
            problems += [
                f"service '{service.name}': {key} is sync: false and has no value: set it with "
                f"`shipyard env set {service.name} {key}=VALUE`, then deploy again"
                for key in missing_sync_keys(self.ctx, service)
            ]
        defined = {d.name for d in stores} | {d.name for d in loaded.datastores}
        for service in loaded.services:
            problems += [
                f"service '{service.name}' reads {what} '{name}', which is neither in this "
                "Blueprint nor in Shipyard: define it under "
                f"{'databases' if what == 'database' else 'services (type: keyvalue)'}, or "
                "correct the name"
                for what, name in _references(service)
                if name not in defined
            ]
        for step in data.steps:
            spec = loaded.datastore(step.name)
            if spec is not None:  # updates too: a bad plan must not stop a running server
                check = spec if step.action == "create" else replace(spec, version=None)
                problems += lifecycle.spec_problems(self.ctx, check)
        return replace(plan, problems=tuple(problems), datastores=data)

    def _edge_problem(self, loaded: LoadedBlueprint, specs: dict[str, ServiceSpec]) -> str:
        """What the edge would refuse in the routing table this Blueprint produces (a bad
        domain, a host two services claim, a health path HAProxy cannot send), found before
        anything is changed."""
        proposed = []
        now = self.ctx.clock.now()
        planned: set[int] = set()  # the ports registration would allocate (same layout)
        for spec in loaded.services:
            existing = self.ctx.state.find_service(spec.name)
            port = existing.internal_port if existing else None
            if port is None and spec.type in ("web", "pserv"):
                port = allocate_internal_port(self.ctx, planned)
                planned.add(port)
            proposed.append(
                Service(
                    name=spec.name, type=spec.type, spec=specs[spec.name], blueprint_path="",
                    desired_instances=spec.num_instances, blueprint_instances=spec.num_instances,
                    internal_port=port,
                    current_release=None, created_at=now, updated_at=now,
                )
            )  # fmt: skip
        try:
            self.ctx.edge.check(
                desired_table(
                    self.ctx.state, self.ctx.settings, proposed, platform=platform(self.ctx)
                )
            )
        except EdgeError as exc:
            return f"the edge cannot route this Blueprint: {exc.message}"
        return ""

    def plan(self, blueprint: str | None, repo: str | None, branch: str | None) -> PlanView:
        source = self.open_source(blueprint, repo, branch)
        try:
            return plan_view(source, self.plan_for(source))
        finally:
            source.cleanup()

    def plan_text(self, text: str, filename: str) -> PlanView:
        """Plan a Blueprint sent as content: nothing on this machine is read."""
        source = source_from_text(text, filename, self.ctx.settings.blueprint_limits)
        return plan_view(source, self.plan_for(source))

    # deploy ----------------------------------------------------------------------------------
    def deploy(
        self,
        blueprint: str | None,
        repo: str | None = None,
        branch: str | None = None,
        services: list[str] | None = None,
        *,
        adopt: bool = False,
        prune: bool = False,
        clear_cache: bool = False,
    ) -> DeployAccepted:
        """``adopt``: take over services another Blueprint created; ``prune``: remove the
        services this Blueprint created and no longer lists; ``clear_cache``: build without
        the services' build caches (Render's "Clear build cache & deploy")."""
        source = self.open_source(blueprint, repo, branch)
        try:
            return self._submit_deploy(source, services, adopt=adopt, prune=prune,
                                       clear_cache=clear_cache)  # fmt: skip
        except BaseException:
            source.cleanup()
            raise

    def deploy_source(
        self, source: Source, services: list[str] | None, reason: str = ""
    ) -> DeployAccepted:
        """Deploy an opened source (a trigger's commit); the engine owns its cleanup once
        accepted, the caller until then."""
        accepted = self._submit_deploy(source, services or None)
        if reason:
            self.ctx.state.add_event(accepted.id, f"triggered by {reason}", level="info")
        return accepted

    def _submit_deploy(
        self, source: Source, only: list[str] | None, *, adopt: bool = False,
        prune: bool = False, clear_cache: bool = False,
    ) -> DeployAccepted:  # fmt: skip
        loaded = source.loaded
        plan = self.plan_for(source, adopt)
        if plan.problems:
            raise UsageError(
                "Cannot deploy this Blueprint:\n" + "\n".join(f"  {p}" for p in plan.problems),
                fields={"problems": list(plan.problems)},
            )
        names = [s.name for s in loaded.services]
        if only:
            unknown = [n for n in only if n not in names]
            if unknown:
                raise NotFound(
                    f"Service(s) {', '.join(unknown)} not in {loaded.path.name}; "
                    f"it defines: {', '.join(names) or 'no service'}."
                )
            names = [n for n in names if n in only]
        stores = [d.name for d in loaded.datastores]
        if not names and not stores:
            raise UsageError(
                f"{loaded.path.name} defines no service Shipyard can run yet.",
                fields={"notices": [n.message for n in loaded.notices]},
            )
        self.ctx.disk.require()  # refused at once (507) when the disk is already short
        pruned = list(plan.orphans) if prune and not only else []
        claimed = [*names, *pruned, *(lifecycle.claim_key(n) for n in stores)]
        target = ",".join([*names, *(f"db:{n}" for n in stores)])
        deploy_id = self._open(OperationKind.DEPLOY, target, claimed)
        try:
            self._register_services(source, names)
            if self.on_register is not None:
                self.on_register(source, names)
        except BaseException as exc:
            self._free(claimed, deploy_id)
            self.ctx.state.finish_deploy(deploy_id, OperationStatus.FAILED, str(exc), {})
            raise
        for notice in loaded.notices:
            self.ctx.state.add_event(
                deploy_id, f"{notice.location}: {notice.path}: {notice.message}", level="warning"
            )

        if clear_cache:
            for name in names:
                self._clean.add((deploy_id, name))
                if clear_build_cache(self.ctx.settings, name):
                    self.ctx.state.add_event(deploy_id, "build cache cleared", service=name)

        def work() -> dict[str, ServiceOutcome]:
            try:
                results = self._deploy_services(deploy_id, source, names)
            finally:
                source.cleanup()
            if pruned and all(r.status == "ok" for r in results.values()):
                for name in pruned:
                    prune_service(self.ctx, name, self.emitter(deploy_id, name))
                    results[name] = ServiceOutcome("ok")
            elif pruned:
                self.ctx.state.add_event(deploy_id, "nothing was pruned: the deploy failed",
                                         level="warning")  # fmt: skip
            return results

        self._spawn(deploy_id, claimed, work)
        return DeployAccepted(id=deploy_id, **plan_view(source, plan).model_dump())

    def _register_services(self, source: Source, names: list[str]) -> None:
        """Create service rows (and their stable internal ports) before anything is built."""
        for name in names:
            spec = source.loaded.service(name)
            with self.ctx.port_lock:
                existing = self.ctx.state.find_service(name)
                port = None
                if spec.type in ("web", "pserv") and (
                    existing is None or existing.internal_port is None
                ):
                    port = allocate_internal_port(self.ctx)
                self.ctx.state.register_service(
                    name,
                    spec.type,
                    spec.stored(self.ctx.box.digest),
                    source.blueprint_id,
                    spec.num_instances,
                    port,
                )

    def _deploy_services(
        self, deploy_id: int, source: Source, names: list[str]
    ) -> dict[str, ServiceOutcome]:
        """Deploy wave by wave (a service after those it references); the services of one
        wave at the same time, up to ``settings.deploy_concurrency``. One service failing
        never stops the others."""
        stores = self._apply_datastores(deploy_id, source)
        missing = {n[3:]: r.error for n, r in stores.items() if r.status != "ok"}
        results: dict[str, ServiceOutcome] = {}
        resolved: dict[str, dict[str, str]] = {}
        env_lock = threading.Lock()  # env resolution reads what earlier services stored
        for wave in dependency_waves(source.loaded.services):
            todo = [n for n in wave if n in names]
            if not todo:
                continue
            workers = max(1, min(self.ctx.settings.deploy_concurrency, len(todo)))
            with ThreadPoolExecutor(workers, thread_name_prefix=f"op-{deploy_id}") as pool:
                outcomes = pool.map(
                    lambda n: self._deploy_one(deploy_id, source, n, resolved, env_lock, missing),
                    todo,
                )
                results.update(zip(todo, outcomes, strict=True))
        return {**stores, **{n: results[n] for n in names}}

    def _first_backup(self, name: str, deploy_id: int, emit: Emit) -> None:
        """A new datastore is backed up at once: point-in-time recovery starts there. Its
        failure is a warning (the scheduler tries again within the hour)."""
        try:
            run_backup(self.ctx, name, "created", emit, deploy_id=deploy_id)
        except ShipyardError as exc:
            emit(f"its first backup failed: {exc.message}", "warning")

    def _backup_before_deploy(self, spec: ServiceSpec, deploy_id: int, emit: Emit) -> None:
        """backupBeforeDeploy: every datastore the service reads, backed up before its
        pre-deploy command (a migration) runs; a failed backup stops the deploy."""
        for name in sorted(_datastores_used(spec)):
            ds = self.ctx.data.find_datastore(name)
            if ds is None or ds.spec.primary is not None:
                continue
            try:
                run = run_backup(self.ctx, name, "pre-deploy", emit, deploy_id=deploy_id)
            except ShipyardError as exc:
                raise DeployFailed(
                    f"{spec.name}: the backup of '{name}' before the deploy failed "
                    f"({exc.message}); nothing was deployed",
                    fields={"service": spec.name, "datastore": name},
                ) from exc
            emit(f"backed up '{name}' before the deploy: {', '.join(run.backup_ids)}", "info")

    def _apply_datastores(self, deploy_id: int, source: Source) -> dict[str, ServiceOutcome]:
        """Create, update and start the Blueprint's datastores before any service (services
        read their connection strings); primaries before their replicas, the rest at once."""
        specs = source.loaded.datastores
        out: dict[str, ServiceOutcome] = {}

        def one(spec: DatastoreSpec) -> ServiceOutcome:
            emit = self.emitter(deploy_id, spec.name)
            if spec.primary and out.get(f"db:{spec.primary}", OK).status != "ok":
                reason = f"its primary '{spec.primary}' is not available"
                emit(reason, "error")
                return ServiceOutcome("failed", error=reason, code="deploy_failed")
            try:
                new = self.ctx.data.find_datastore(spec.name) is None
                ds = lifecycle.apply(self.ctx, spec, source.blueprint_id, emit)
                if new and not spec.primary:
                    self._first_backup(ds.name, deploy_id, emit)
                return OK
            except Exception as exc:
                error = explain(self.ctx, exc, during=f"the creation of {spec.name}")
                if not isinstance(exc, ShipyardError):
                    log.exception("datastore %s failed", spec.name)
                durably(self.ctx, lambda: emit(error.message, "error"))
                return ServiceOutcome("failed", error=error.message, code=error.code)

        for wave in ([s for s in specs if not s.primary], [s for s in specs if s.primary]):
            if not wave:
                continue
            with ThreadPoolExecutor(
                min(4, len(wave)), thread_name_prefix=f"op-{deploy_id}"
            ) as pool:
                out.update(zip((f"db:{s.name}" for s in wave), pool.map(one, wave), strict=True))
        return out

    def _deploy_one(
        self,
        deploy_id: int,
        source: Source,
        name: str,
        resolved: dict[str, dict[str, str]],
        env_lock: threading.Lock,
        missing: dict[str, str],
    ) -> ServiceOutcome:
        spec = source.loaded.service(name)
        emit = self.emitter(deploy_id, name)
        needs = sorted(_datastores_used(spec) & set(missing))
        if needs:
            reason = f"{name}: not deployed: " + "; ".join(
                f"'{n}' is not available ({missing[n].splitlines()[0]})" for n in needs
            )
            emit(reason, "error")
            return ServiceOutcome("failed", error=reason, code="deploy_failed")
        try:
            with env_lock:
                env = resolve_service_env(self.ctx, source.loaded, spec, resolved, emit)
                resolved[name] = env
            stored = spec.stored(self.ctx.box.digest)
            req = BuildRequest(
                name, stored, stored.config_digest(), env, source.root, source.label,
                source.git, clean=(deploy_id, name) in self._clean,
            )  # fmt: skip
            release = build_release(self.ctx, deploy_id, req, emit)
            if spec.backup_before_deploy:
                self._backup_before_deploy(spec, deploy_id, emit)
            run_pre_deploy(self.ctx, release, emit)
            (release_cron if spec.type == "cron" else rollout)(
                self.ctx, release, emit,
                previous_status=ReleaseStatus.SUPERSEDED, from_blueprint=True,
            )  # fmt: skip
            return ServiceOutcome("ok", release=release.number)
        except Exception as exc:  # go on with the others
            error = explain(self.ctx, exc, during=f"the deploy of {name}")
            if not isinstance(exc, ShipyardError):  # a bug or an OS error
                log.exception("deploy of %s failed", name)
            durably(self.ctx, lambda: emit(error.message, "error"))
            durably(self.ctx, lambda: fail_unfinished_releases(self.ctx, name, error.message))
            return ServiceOutcome("failed", error=error.message, code=error.code)

    # rollback & scale --------------------------------------------------------------------
    def rollback(self, service: str, to: int | None = None) -> RollbackAccepted:
        self._rollback_target(service, to)  # bad input: refused before anything is recorded
        deploy_id = self._open(OperationKind.ROLLBACK, service, [service])
        try:  # again under the claim: a deploy that just finished may have pruned an artifact
            svc, target, release = self._rollback_target(service, to)
        except ShipyardError as exc:
            self._free([service], deploy_id)
            self.ctx.state.finish_deploy(deploy_id, OperationStatus.CANCELLED, exc.message, {})
            raise
        emit = self.emitter(deploy_id, service)
        emit(
            f"rolling back from release {svc.current_release} to release {target} (no rebuild)",
            "info",
        )
        self._spawn_one(
            deploy_id, service, emit,
            lambda: (release_cron if svc.type == "cron" else rollout)(
                self.ctx, release, emit,
                previous_status=ReleaseStatus.ROLLED_BACK, from_blueprint=False,
            ),
            ServiceOutcome("ok", release=target),
        )  # fmt: skip
        return RollbackAccepted(id=deploy_id, service=service, release=target)

    def _rollback_target(self, service: str, to: int | None) -> tuple[Service, int, Release]:
        svc = self.ctx.state.service(service)
        target = rollback_target(self.ctx.state.releases(service), svc.current_release, to)
        release = self.ctx.state.release(service, target)
        app = artifact(release).app
        if not app.is_dir():
            raise Conflict(f"Release {target} cannot be rolled out: its artifact {app} is missing.")
        return svc, target, release

    def scale(
        self, service: str, count: int, kind: OperationKind = OperationKind.SCALE
    ) -> ScaleAccepted:
        if not 1 <= count <= 100:
            raise UsageError(f"Cannot scale {service} to {count}: instances must be 1 to 100.")
        svc = self.ctx.state.service(service)
        if svc.type == "cron":
            raise Conflict(
                f"{service} is a cron job: it runs on its schedule, one run at a time, and has "
                "no instances to scale; trigger a run with `shipyard cron run`.",
                fields={"service": service},
            )
        if not svc.deployed:
            raise Conflict(f"{service} has no live release yet; deploy it before scaling.")
        if svc.spec.disk is not None and count > 1:
            raise Conflict(
                f"Cannot scale {service} to {count}: it has a disk ({svc.spec.disk.name}), and a "
                "service with a disk runs one instance.",
                fields={"service": service},
            )
        fixed = sorted({i.port for i in self.ctx.state.instances(service) if i.fixed_port})
        if fixed and count > 1:
            raise Conflict(
                f"Cannot scale {service} to {count}: it ignores $PORT and listens on port "
                f"{fixed[0]}, which only one instance can hold; make it listen on $PORT to run "
                "more than one instance.",
                fields={"service": service, "port": fixed[0]},
            )
        deploy_id = self._open(kind, f"{service}={count}", [service])
        emit = self.emitter(deploy_id, service)

        self._spawn_one(
            deploy_id, service, emit,
            lambda: scale_to(self.ctx, service, count, emit, persist=kind == OperationKind.SCALE),
            ServiceOutcome("ok", instances=count),
        )  # fmt: skip
        return ScaleAccepted(id=deploy_id, service=service, instances=count)

    def run_operation(
        self, kind: OperationKind, target: str, claims: list[str], key: str, emit_as: str,
        action: Callable[[Emit], object],
    ) -> int:  # fmt: skip
        """Record an operation holding ``claims``, run ``action(emit)`` in the background; its
        outcome is recorded under ``key``. Returns the operation id (for --wait)."""
        deploy_id = self._open(kind, target, claims)
        emit = self.emitter(deploy_id, emit_as)

        def work() -> dict[str, ServiceOutcome]:
            try:
                action(emit)
            except ShipyardError as exc:
                failure = exc
                durably(self.ctx, lambda: emit(failure.message, "error"))
                return {key: ServiceOutcome("failed", error=exc.message, code=exc.code)}
            return {key: OK}

        self._spawn(deploy_id, claims, work)
        return deploy_id

    def _spawn_one(
        self,
        deploy_id: int,
        service: str,
        emit: Emit,
        action: Callable[[], None],
        success: ServiceOutcome,
    ) -> None:
        """Run one operation on one service; its failure is reported, not raised."""

        def work() -> dict[str, ServiceOutcome]:
            try:
                action()
            except ShipyardError as exc:
                emit(exc.message, "error")
                return {service: ServiceOutcome("failed", error=exc.message, code=exc.code)}
            return {service: success}

        self._spawn(deploy_id, [service], work)
