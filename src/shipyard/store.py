"""The store protocol: what the stages (rollout, run, route, release, observe) may read and
change in the control plane's state. ``controlplane/state.py`` implements it on SQLite.

Contract: every method is one short transaction and returns quickly; records are immutable
snapshots (re-read before acting on a field another actor may change). Unknown names raise
NotFound. Instance state changes that may race are compare-and-set (``transition``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from shipyard.blueprint.spec import DatastoreSpec, ServiceSpec
from shipyard.records import (
    BackupRun,
    Datastore,
    Drill,
    Event,
    Instance,
    InstanceState,
    Operation,
    OperationKind,
    OperationStatus,
    Release,
    ReleaseStatus,
    RunStatus,
    Service,
    ServiceOutcome,
)


class Store(Protocol):
    def version(self) -> int:
        """A number that changes whenever another thread or process committed a change (the
        caller's own writes do not change it): lets a loop skip re-reading unchanged state."""

    # services
    def service(self, name: str) -> Service:
        """Raises NotFound naming the known services."""

    def find_service(self, name: str) -> Service | None: ...

    def services(self) -> list[Service]: ...

    def register_service(
        self, name: str, type_: str, spec: ServiceSpec, blueprint_path: str, instances: int,
        internal_port: int | None,
    ) -> None:  # fmt: skip
        """Create a service seen for the first time; an existing one only records its
        Blueprint. Its spec changes when a release goes live (``promote``)."""

    def promote(
        self, name: str, number: int, previous_status: ReleaseStatus, spec: ServiceSpec,
        desired: int | None,
    ) -> None:  # fmt: skip
        """Atomically: ``number`` is live and current, the release it replaces gets
        ``previous_status``, the service takes ``spec`` (and ``desired`` instances)."""

    def unpromote(self, before: Service, number: int, reason: str) -> None:
        """Atomically undo ``promote`` of ``number``, back to ``before``."""

    def set_desired(self, name: str, count: int) -> None: ...

    def used_ports(self) -> set[int]: ...

    # releases
    def next_release_number(self, service: str) -> int: ...

    def add_release(
        self, *, service: str, number: int, config_digest: str, git_commit: str,
        git_branch: str, source: str, dir: str, spec: ServiceSpec, env_enc: bytes,
        deploy_id: int | None,
    ) -> Release:  # fmt: skip
        """Record release ``number`` as building; returns it."""

    def release(self, service: str, number: int) -> Release: ...

    def releases(self, service: str) -> list[Release]:
        """Newest first."""

    def mark_deployable(self, service: str, number: int) -> None: ...

    def mark_pruned(self, service: str, number: int) -> None: ...

    def set_release_status(
        self, service: str, number: int, status: ReleaseStatus, reason: str = ""
    ) -> None: ...

    # instances
    def add_instance(
        self, inst_id: str, service: str, release: int, port: int, log_path: str
    ) -> None: ...

    def instance(self, inst_id: str) -> Instance: ...

    def instances(
        self, service: str | None = None, states: tuple[InstanceState, ...] = ...
    ) -> list[Instance]:
        """Oldest first; by default every instance that has (or may again have) a process."""

    def transition(
        self, inst_id: str, from_states: tuple[InstanceState, ...], **values: Any
    ) -> bool:
        """Change the instance only if it is still in one of ``from_states``."""

    def update_instance(self, inst_id: str, **values: Any) -> None: ...

    # operations
    def add_deploy(self, kind: OperationKind, target: str) -> int: ...

    def finish_deploy(
        self, deploy_id: int, status: OperationStatus, error: str,
        result: dict[str, ServiceOutcome], code: str = "",
    ) -> None: ...  # fmt: skip

    def deploy(self, deploy_id: int) -> Operation: ...

    def running_deploys(self) -> list[Operation]: ...

    def add_event(
        self, deploy_id: int, message: str, service: str = "", level: str = "info"
    ) -> None: ...

    def events(self, deploy_id: int, after: int = 0) -> list[Event]: ...

    # generated env values (encrypted)
    def generated_values(self, service: str) -> dict[str, bytes]: ...

    def save_generated(self, service: str, values: dict[str, bytes]) -> None: ...

    def replace_generated(self, service: str, key: str, token: bytes) -> None: ...

    def reencrypt(self, again: Callable[[bytes], bytes]) -> int:
        """Every encrypted value through ``again`` (key rotation), one transaction."""

    # operator-set env values, per service or "group:<name>" (encrypted)
    def env_values(self, scope: str) -> dict[str, bytes]: ...

    def set_env_values(self, scope: str, values: dict[str, bytes], unset: list[str]) -> None: ...


class Secrets(Protocol):
    """Encryption at rest (``controlplane/secrets.py``: Fernet, key in SHIPYARD_HOME)."""

    def digest(self, text: str) -> str:
        """A keyed digest: shows a change without letting anyone test guesses."""

    def encrypt(self, plaintext: str) -> bytes: ...

    def decrypt(self, token: bytes) -> str:
        """Raises ShipyardError if the key does not match."""

    def encrypt_env(self, env: dict[str, str]) -> bytes: ...

    def decrypt_env(self, token: bytes) -> dict[str, str]: ...


class DataStore(Protocol):
    """Managed datastores' rows and their secrets (``controlplane/datastate.py``). Each
    method is one short transaction; secrets are stored as the caller encrypted them."""

    def datastore(self, name: str) -> Datastore:
        """NotFound naming the known datastores if there is none called ``name``."""

    def find_datastore(self, name: str) -> Datastore | None: ...

    def datastores(self) -> list[Datastore]: ...

    def add_datastore(
        self,
        spec: DatastoreSpec,
        version: str,
        port: int,
        dir: str,
        blueprint_path: str,
        origin: str,
        secrets: dict[str, bytes],
    ) -> Datastore:
        """Create the row (status creating) and its secrets in one transaction; Conflict if
        the name or the port is taken."""  # fmt: skip

    def update_datastore(self, name: str, **values: Any) -> None:
        """Set columns (status, reason, pid, start_time, spec, blueprint_path, restarts,
        started_at); updated_at follows."""

    def datastore_ports(self) -> set[int]: ...

    def datastore_secrets(self, name: str) -> dict[str, bytes]: ...

    def save_datastore_secret(self, name: str, key: str, value: bytes) -> None: ...

    def remove_datastore(self, name: str) -> None:
        """Delete the row and its secrets."""

    def rename_datastore(self, name: str, new_name: str) -> None:
        """The row, its secrets, backup runs and drills under ``new_name`` (one transaction)."""

    # backups and drills
    def add_backup_run(
        self, datastore: str, trigger: str, kind: str, deploy_id: int | None
    ) -> BackupRun: ...

    def finish_backup_run(
        self, run_id: int, status: RunStatus, backup_ids: tuple[str, ...], size_bytes: int | None,
        error: str,
    ) -> None: ...  # fmt: skip

    def backup_runs(self, datastore: str, limit: int = 50) -> list[BackupRun]:
        """Newest first."""

    def add_drill(self, datastore: str, deploy_id: int | None) -> Drill: ...

    def finish_drill(self, drill_id: int, status: RunStatus, **values: Any) -> None:
        """values: backup_id, target_at, heartbeat_at, recovery_point_s, restore_s, error."""

    def drills(self, datastore: str, limit: int = 20) -> list[Drill]:
        """Newest first."""
