"""Deploys that something other than `shipyard deploy` starts: a push to a Shipyard
repository, a new commit on a watched branch (polling), a GitHub or GitLab webhook, a deploy
hook. Each becomes a *job* for one Blueprint source; jobs go through one queue:

- a job for a source whose services are deploying waits; a newer job for the same source
  replaces the waiting one (only the newest commit is deployed), so deploys of one service
  never interleave and a burst of pushes deploys the last one once;
- a job decides which services it deploys when it starts, from the Blueprint in its commit:
  new services and services whose Blueprint entry changed (Blueprint sync), and services the
  commit touches (buildFilter, rootDir) that auto-deploy (autoDeployTrigger; explicit triggers
  such as a push or a deploy hook ignore that switch). Removed services are reported, never
  deleted (``shipyard deploy --prune`` does that).

Tickets (in memory) let the pusher follow its job: queued -> deploying (an operation id) or
skipped/superseded/failed.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from shipyard.controlplane.engine import Engine
from shipyard.controlplane.triggerstate import ServiceSource, TriggerState
from shipyard.errors import Conflict, NotFound, ShipyardError, UsageError
from shipyard.source import gitrepo
from shipyard.source.open import Source, commit_source, open_source
from shipyard.triggers.filters import BuildFilter, skip_marker, touches

log = logging.getLogger("shipyard.triggers")


@dataclass
class Ticket:
    id: int
    key: str
    reason: str
    status: str = "queued"  # queued, deploying, skipped, superseded, failed
    deploy_id: int | None = None
    message: str = ""
    services: list[str] = field(default_factory=list)


@dataclass
class Job:
    key: str  # the Blueprint source (one queue slot each)
    reason: str  # for people: "push to main (1a2b3c4d)"
    open: Callable[[], Source]
    files: tuple[str, ...] | None = None  # changed paths (None: unknown, all touched)
    auto: bool = True  # an automatic trigger: autoDeployTrigger off services stay put
    only: list[str] | None = None  # deploy only these services (a deploy hook)
    commit: str = ""
    on_done: Callable[[], None] | None = None


class Triggers:
    def __init__(self, engine: Engine, state: TriggerState) -> None:
        self.engine = engine
        self.ctx = engine.ctx
        self.state = state
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.tickets: dict[int, Ticket] = {}
        self._waiting: dict[str, tuple[Job, Ticket]] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._poll_errors: dict[str, str] = {}
        engine.on_register = self.record

    # lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        for name, target in (("trigger-queue", self._drain), ("trigger-poll", self._poll_loop)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()

    # where services come from ------------------------------------------------------------
    def record(self, source: Source, names: list[str]) -> None:
        """After a deploy registered ``names``: remember where they come from (the engine calls
        this for every deploy, from any source)."""
        kind, location, blueprint = source.origin
        if not kind:
            return
        for name in names:
            spec = source.loaded.service(name)
            previous = self.state.source(name)
            branch = spec.branch or source.git.branch or (previous.branch if previous else "")
            self.state.set_source(ServiceSource(
                service=name, kind=kind, location=location, branch=branch or "main",
                blueprint=blueprint, blueprint_id=source.blueprint_id,
                auto_deploy=spec.auto_deploy,
                build_filter=BuildFilter(spec.build_filter_paths, spec.build_filter_ignored),
                root_dir=spec.root_dir,
                last_commit=source.git.commit or (previous.last_commit if previous else ""),
            ))  # fmt: skip
            self.state.hooks(name)  # every service has its deploy hook from its first deploy

    def watched(self, src: ServiceSource) -> tuple[str, str] | None:
        """The (repository, branch) whose commits deploy the service: its Blueprint ``repo``,
        else the repository it was deployed from; None for a directory without one."""
        spec = self.ctx.state.find_service(src.service)
        repo = spec.spec.repo if spec is not None else ""
        if repo:
            return repo, spec.spec.branch or src.branch if spec else src.branch
        if src.kind == "git":
            return src.location, src.branch
        return None

    # queue -------------------------------------------------------------------------------
    def submit(self, job: Job) -> Ticket:
        ticket = Ticket(next(self._ids), job.key, job.reason)
        with self._lock:
            self.tickets[ticket.id] = ticket
            older = self._waiting.pop(job.key, None)
            if older is not None:
                older[1].status = "superseded"
                older[1].message = f"replaced by a newer trigger: {job.reason}"
                if older[0].on_done:
                    older[0].on_done()
            self._waiting[job.key] = (job, ticket)
        self._try_start(job.key)
        # the queue's thread may have taken the job first: answer once it has started it
        deadline = self.ctx.clock.monotonic() + 30
        while ticket.status == "queued" and self.ctx.clock.monotonic() < deadline:
            with self._lock:
                if self._waiting.get(job.key, (None, None))[1] is ticket:
                    break  # waits for a deploy under way
            self._stop.wait(0.05)
        return ticket

    def ticket(self, ticket_id: int) -> Ticket:
        found = self.tickets.get(ticket_id)
        if found is None:
            raise NotFound(f"No trigger #{ticket_id} (triggers are kept until a restart).")
        return found

    def _drain(self) -> None:
        while not self._stop.wait(0.5):
            for key in list(self._waiting):
                try:
                    self._try_start(key)
                except Exception:  # never let one job stop the queue
                    log.exception("trigger %s failed", key)

    def _try_start(self, key: str) -> None:
        with self._lock:
            entry = self._waiting.get(key)
            if entry is None:
                return
            job, ticket = entry
            running = [t for t in self.tickets.values() if t.key == key and t.status == "deploying"
                       and t.deploy_id is not None and self._running(t.deploy_id)]  # fmt: skip
            if running:
                return  # waits for the deploy of this source that is under way
            del self._waiting[key]
        try:
            self._start(job, ticket)
        except Conflict:
            with self._lock:  # a service is busy (an operation of another kind): wait again
                if key not in self._waiting:
                    ticket.status = "queued"
                    self._waiting[key] = (job, ticket)
                else:
                    ticket.status, ticket.message = "superseded", "replaced by a newer trigger"
        except ShipyardError as exc:
            ticket.status, ticket.message = "failed", exc.message
            log.warning("trigger %s (%s) failed: %s", key, job.reason, exc.message)
        except Exception as exc:
            ticket.status, ticket.message = "failed", f"internal error: {exc}"
            log.exception("trigger %s failed", key)
        if ticket.status != "queued" and job.on_done:
            job.on_done()

    def _running(self, deploy_id: int) -> bool:
        return str(self.ctx.state.deploy(deploy_id).status) == "running"

    def _start(self, job: Job, ticket: Ticket) -> None:
        source = job.open()
        try:
            names, skipped = self._select(source, job)
            if not names and not source.loaded.datastores:
                ticket.status = "skipped"
                ticket.message = "nothing to deploy: " + ("; ".join(skipped) or "no service")
                source.cleanup()
                return
            accepted = self.engine.deploy_source(source, names, reason=job.reason)
        except BaseException:
            source.cleanup()
            raise
        ticket.status, ticket.deploy_id, ticket.services = "deploying", accepted.id, names
        for note in skipped:
            self.ctx.state.add_event(accepted.id, note, level="info")
        if job.commit:
            self.state.set_last_commit(names, job.commit)

    def _select(self, source: Source, job: Job) -> tuple[list[str], list[str]]:
        names, skipped = [], []
        for spec in source.loaded.services:
            if job.only is not None and spec.name not in job.only:
                continue
            live = self.ctx.state.find_service(spec.name)
            stored = spec.stored(self.ctx.box.digest)
            if live is None or not live.deployed:
                names.append(spec.name)
            elif live.spec.config_digest() != stored.config_digest():
                names.append(spec.name)  # its Blueprint entry changed: sync
            elif job.only is not None:
                names.append(spec.name)
            elif job.auto and not spec.auto_deploy:
                skipped.append(f"{spec.name}: not deployed: autoDeployTrigger is off")
            elif not touches(BuildFilter(spec.build_filter_paths, spec.build_filter_ignored),
                             spec.root_dir, job.files):  # fmt: skip
                skipped.append(f"{spec.name}: not deployed: the commit changes none of its "
                               "files (buildFilter/rootDir)")  # fmt: skip
            else:
                names.append(spec.name)
        return names, skipped

    # sources of jobs ---------------------------------------------------------------------
    def _scratch(self) -> Path:
        return self.ctx.settings.home / "tmp"

    def commit_job(self, kind: str, location: str, repo: Path, commit: str, branch: str,
                   blueprint: str, blueprint_id: str, reason: str, *,
                   files: tuple[str, ...] | None, auto: bool,
                   only: list[str] | None = None) -> Job:  # fmt: skip
        label = location if kind == "git" else f"shipyard repository {location}"

        def opened() -> Source:
            return commit_source(repo, commit, branch, self._scratch(), kind=kind,
                                 location=location, blueprint=blueprint,
                                 blueprint_id=blueprint_id, label=label,
                                 limits=self.ctx.settings.blueprint_limits)  # fmt: skip

        return Job(blueprint_id or f"{kind}:{location}@{branch}", reason, opened, files, auto,
                   only, commit)  # fmt: skip

    def owner_of(self, kind: str, location: str) -> tuple[str, str]:
        """(blueprint, blueprint_id) recorded for services from this source, if any."""
        for src in self.state.sources():
            if src.kind == kind and src.location == location:
                return src.blueprint, src.blueprint_id
        return "", ""

    def push_job(self, repo_name: str, old: str, new: str, branch: str) -> Job:
        """A push to a Shipyard repository (explicit: every service it touches deploys).
        Its services keep the owner they had when deployed from the repository's directory
        (`shipyard deploy` there, then `git push`: the same owner, not a takeover)."""
        repo = self.state.repo(repo_name)
        path = gitrepo.repo_path(self.ctx.settings, repo_name)
        blueprint, owner = self.owner_of("repo", repo_name)
        if not owner:
            rel = blueprint or self._blueprint_in(path, new)
            blueprint, owner = rel, str(Path(repo.work_dir) / rel)
        files = gitrepo.changed_files(path, old, new)
        reason = f"push to {branch} ({new[:8]})"
        return self.commit_job("repo", repo_name, path, new, branch, blueprint, owner, reason,
                               files=files, auto=False)  # fmt: skip

    def _blueprint_in(self, repo: Path, commit: str) -> str:
        listing = gitrepo.git("ls-tree", "--name-only", commit, cwd=repo).splitlines()
        for name in ("shipyard.yaml", "shipyard.yml", "render.yaml", "render.yml"):
            if name in listing:
                return name
        raise UsageError(f"commit {commit[:12]} has no shipyard.yaml or render.yaml at its root.")

    def watch_job(self, src: ServiceSource, url: str, branch: str, *, auto: bool,
                  reason: str, files: tuple[str, ...] | None = None,
                  only: list[str] | None = None, commit: str = "") -> Job | None:  # fmt: skip
        """A job for the newest commit of ``branch`` of a watched repository (fetched into its
        mirror now); None when a skip marker says so (automatic triggers only)."""
        if src.kind == "repo":
            path = gitrepo.repo_path(self.ctx.settings, src.location)
            head = commit or gitrepo.resolve(path, f"refs/heads/{branch}")
        else:
            path, head = gitrepo.fetch_mirror(self.ctx.settings, url, branch)
            if commit:
                head = commit
        if auto:
            marker = skip_marker(gitrepo.commit_message(path, head))
            if marker:
                log.info("commit %s of %s skipped: its message holds %s", head[:8], url, marker)
                self.state.set_last_commit([s.service for s in self._same(src)], head)
                return None
        if files is None and src.last_commit:
            files = gitrepo.changed_files(path, src.last_commit, head)
        blueprint = src.blueprint if src.kind != "dir" else self._rel_blueprint(src, path, head)
        kind, location = ("repo", src.location) if src.kind == "repo" else ("git", url)
        return self.commit_job(kind, location, path, head, branch, blueprint, src.blueprint_id,
                               f"{reason} ({head[:8]})", files=files, auto=auto,
                               only=only)  # fmt: skip

    def _rel_blueprint(self, src: ServiceSource, repo: Path, commit: str) -> str:
        name = Path(src.blueprint).name
        listing = gitrepo.git("ls-tree", "-r", "--name-only", commit, cwd=repo).splitlines()
        matches = sorted((p for p in listing if Path(p).name == name), key=len)
        return matches[0] if matches else self._blueprint_in(repo, commit)

    def _same(self, src: ServiceSource) -> list[ServiceSource]:
        return [s for s in self.state.sources() if s.blueprint_id == src.blueprint_id]

    def dir_job(self, src: ServiceSource, reason: str, only: list[str] | None) -> Job:
        def opened() -> Source:
            cfg = self.ctx.settings
            return open_source(src.blueprint, None, None, self._scratch(),
                               allowed=cfg.source_dir_allowed,
                               limits=cfg.blueprint_limits)  # fmt: skip

        return Job(src.blueprint_id, reason, opened, None, False, only)

    # entry points --------------------------------------------------------------------------
    def deploy_hook(self, service: str) -> Ticket:
        """A deploy hook: the newest commit of the service's branch, or its last directory."""
        src = self._source(service)
        watched = self.watched(src)
        if src.kind == "repo" or watched is not None:
            url, branch = watched or (src.location, src.branch)
            job = self.watch_job(src, url, branch, auto=False, reason="deploy hook", only=[service])
            assert job is not None
        else:
            job = self.dir_job(src, "deploy hook", [service])
        return self.submit(job)

    def _source(self, service: str) -> ServiceSource:
        src = self.state.source(service)
        if src is None:
            self.ctx.state.service(service)  # 404 for an unknown service
            raise Conflict(f"{service} has not been deployed yet: deploy it once first.")
        return src

    def poll_once(self) -> list[Ticket]:
        """One round of the watch: every watched branch whose head moved gets a job."""
        groups: dict[tuple[str, str], list[ServiceSource]] = {}
        for src in self.state.sources():
            target = self.watched(src)
            if target is None or src.kind == "repo" or not src.auto_deploy:
                continue
            groups.setdefault(target, []).append(src)
        tickets = []
        for (url, branch), members in groups.items():
            try:
                head = gitrepo.remote_head(url, branch)
            except ShipyardError as exc:
                if self._poll_errors.get(url) != exc.message:
                    log.warning("cannot watch %s: %s", url, exc.message)
                self._poll_errors[url] = exc.message
                continue
            self._poll_errors.pop(url, None)
            if not head or all(m.last_commit == head for m in members):
                continue
            first = members[0]
            if not first.last_commit:  # nothing known yet: this commit is the baseline
                self.state.set_last_commit([m.service for m in members], head)
                continue
            try:
                job = self.watch_job(
                    first, url, branch, auto=True, reason=f"new commit on {branch}"
                )
            except ShipyardError as exc:
                log.warning("cannot deploy the new commit of %s: %s", url, exc.message)
                continue
            self.state.set_last_commit([m.service for m in members], head)
            if job is not None:
                tickets.append(self.submit(job))
        return tickets

    def _poll_loop(self) -> None:
        interval = self.ctx.settings.poll_interval_s
        while not self._stop.wait(interval):
            try:
                self.poll_once()
            except Exception:
                log.exception("the watch of repositories failed")
