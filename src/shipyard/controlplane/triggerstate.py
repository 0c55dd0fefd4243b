"""Rows of the triggers (git repositories Shipyard serves, where each service's code comes
from, hook secrets, webhook deliveries); secrets encrypted with the state's SecretBox."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from shipyard.clock import Clock
from shipyard.controlplane.db import Database
from shipyard.errors import NotFound
from shipyard.store import Secrets
from shipyard.triggers.filters import BuildFilter


@dataclass(frozen=True)
class Repo:
    name: str
    work_dir: str  # the directory `shipyard remote add` ran in (its Blueprint's owner)
    branch: str  # the branch whose pushes deploy
    token: str  # HTTP push password


@dataclass(frozen=True)
class ServiceSource:
    """Where a service's last deploy came from, and what deploys it again."""

    service: str
    kind: str  # "dir" (deploy -f), "repo" (a Shipyard repository), "git" (a repository URL)
    location: str  # the directory, the repository name, or the URL
    branch: str
    blueprint: str  # the Blueprint file: absolute for "dir", else relative to the repository
    blueprint_id: str  # its owner (services keep it across kinds of deploys)
    auto_deploy: bool
    build_filter: BuildFilter
    root_dir: str
    last_commit: str

    @property
    def watch_key(self) -> str:
        return f"{self.kind}:{self.location}@{self.branch}"


@dataclass(frozen=True)
class Hooks:
    service: str
    token: str  # the deploy hook's key
    secret: str  # the webhooks' secret


def _source(row: dict[str, Any]) -> ServiceSource:
    return ServiceSource(
        service=row["service"], kind=row["kind"], location=row["location"],
        branch=row["branch"], blueprint=row["blueprint"], blueprint_id=row["blueprint_id"],
        auto_deploy=bool(row["auto_deploy"]),
        build_filter=BuildFilter.from_dict(json.loads(row["build_filter"])),
        root_dir=row["root_dir"], last_commit=row["last_commit"],
    )  # fmt: skip


class TriggerState:
    def __init__(self, db: Database, box: Secrets, clock: Clock) -> None:
        self.db = db
        self.box = box
        self.clock = clock

    # repositories ------------------------------------------------------------------------
    def add_repo(self, name: str, work_dir: str, branch: str) -> Repo:
        existing = self.find_repo(name)
        if existing is not None:
            return existing
        token = secrets.token_urlsafe(32)
        self.db.execute("INSERT INTO repos VALUES (?,?,?,?,?)", name, work_dir, branch,
                        self.box.encrypt(token), self.clock.now())  # fmt: skip
        return Repo(name, work_dir, branch, token)

    def find_repo(self, name: str) -> Repo | None:
        row = self.db.one("SELECT * FROM repos WHERE name=?", name)
        if row is None:
            return None
        token = self.box.decrypt(bytes(row["token_enc"]))
        return Repo(row["name"], row["work_dir"], row["branch"], token)

    def repo(self, name: str) -> Repo:
        found = self.find_repo(name)
        if found is None:
            raise NotFound(f"No Shipyard repository named {name!r}; create it with "
                           "`shipyard remote add` in the project's directory.")  # fmt: skip
        return found

    def repo_for_dir(self, work_dir: str) -> Repo | None:
        row = self.db.one("SELECT name FROM repos WHERE work_dir=?", work_dir)
        return self.find_repo(row["name"]) if row else None

    def repos(self) -> list[Repo]:
        names = [r["name"] for r in self.db.all("SELECT name FROM repos ORDER BY name")]
        return [r for n in names if (r := self.find_repo(n)) is not None]

    # where services come from ------------------------------------------------------------
    def set_source(self, src: ServiceSource) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO service_sources VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            src.service, src.kind, src.location, src.branch, src.blueprint, src.blueprint_id,
            int(src.auto_deploy), json.dumps(src.build_filter.to_dict()), src.root_dir,
            src.last_commit, self.clock.now(),
        )  # fmt: skip

    def source(self, service: str) -> ServiceSource | None:
        row = self.db.one("SELECT * FROM service_sources WHERE service=?", service)
        return _source(row) if row else None

    def sources(self) -> list[ServiceSource]:
        return [_source(r) for r in self.db.all("SELECT * FROM service_sources ORDER BY service")]

    def set_last_commit(self, services: list[str], commit: str) -> None:
        for name in services:
            self.db.execute("UPDATE service_sources SET last_commit=? WHERE service=?",
                            commit, name)  # fmt: skip

    # hooks -------------------------------------------------------------------------------
    def hooks(self, service: str, rotate: bool = False) -> Hooks:
        row = None if rotate else self.db.one("SELECT * FROM service_hooks WHERE service=?",
                                              service)  # fmt: skip
        if row is None:
            token, secret = secrets.token_urlsafe(24), secrets.token_hex(20)
            self.db.execute("INSERT OR REPLACE INTO service_hooks VALUES (?,?,?,?)", service,
                            self.box.encrypt(token), self.box.encrypt(secret),
                            self.clock.now())  # fmt: skip
            return Hooks(service, token, secret)
        return Hooks(service, self.box.decrypt(bytes(row["token_enc"])),
                     self.box.decrypt(bytes(row["secret_enc"])))  # fmt: skip

    def find_hooks(self, service: str) -> Hooks | None:
        row = self.db.one("SELECT service FROM service_hooks WHERE service=?", service)
        return self.hooks(service) if row else None

    # webhook deliveries ------------------------------------------------------------------
    def first_delivery(self, delivery: str) -> bool:
        """Record a delivery id; False if it was seen before (a replay). Ids older than 30
        days are forgotten."""
        now = self.clock.now()
        with self.db.tx() as conn:
            conn.execute(
                "DELETE FROM webhook_deliveries WHERE received_at < ?", (now - 30 * 86400,)
            )
            cur = conn.execute("INSERT OR IGNORE INTO webhook_deliveries VALUES (?,?)",
                               (delivery, now))  # fmt: skip
            return cur.rowcount == 1
