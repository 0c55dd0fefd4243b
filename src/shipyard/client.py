"""Typed HTTP client for the REST API. The CLI and the tests use it; errors come back as the
same ShipyardError class the server raised (rebuilt from its ``code``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import TypeAdapter

from shipyard.apimodels import (
    BackupsView,
    ClientCommand,
    DataOpAccepted,
    DatastoreInfo,
    DatastoreView,
    DeleteResult,
    DeployAccepted,
    DiskRestoreAccepted,
    DiskSnapshotView,
    DrillView,
    EnvBody,
    EnvChanged,
    EnvView,
    EventsPage,
    EventView,
    Health,
    KeyRotated,
    LogLines,
    OperationView,
    PlanView,
    PromoteAccepted,
    PromoteBody,
    ReleaseView,
    RestoreBody,
    RollbackAccepted,
    ScaleAccepted,
    ServiceView,
    ShutdownAccepted,
)
from shipyard.clock import SystemClock, poll_until
from shipyard.errors import DaemonUnavailable, ShipyardError, error_from_dict
from shipyard.settings import Settings
from shipyard.triggers.models import (
    HooksView,
    ReceiveBody,
    ReceiveResult,
    RepoBody,
    RepoView,
    TicketView,
)


class Client:
    def __init__(
        self, settings: Settings, timeout: float = 60.0, http: httpx.Client | None = None
    ) -> None:
        """``http``: the HTTP client to send through (default: one to ``settings.api_url`` with
        the token in SHIPYARD_HOME); tests pass a FastAPI TestClient (an httpx.Client)."""
        self.settings = settings
        self._owns_http = http is None  # close only what this client opened
        if http is None:
            path = settings.token_path
            token = path.read_text().strip() if path.exists() else ""
            # No token yet (a home never started): no header; "Bearer " alone is no valid one.
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            http = httpx.Client(base_url=settings.api_url, timeout=timeout, headers=headers)
        self._http = http

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise DaemonUnavailable(
                f"The Shipyard daemon is not reachable at {self.settings.api_url} "
                f"(SHIPYARD_HOME={self.settings.home}). Start it with `shipyard up -d`."
            ) from exc
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                raise ShipyardError(
                    f"API error {response.status_code}: {response.text[:200]}"
                ) from None
            raise error_from_dict(body)
        return response.json()

    def health(self) -> Health:
        return Health.model_validate(self._request("GET", "/v1/health"))

    def plan(
        self, blueprint: str | None = None, repo: str | None = None, branch: str | None = None
    ) -> PlanView:
        body = {"blueprint": blueprint, "repo": repo, "branch": branch}
        return PlanView.model_validate(self._request("POST", "/v1/plan", json=body))

    def deploy(
        self,
        blueprint: str | None = None,
        repo: str | None = None,
        branch: str | None = None,
        services: list[str] | None = None,
        *,
        adopt: bool = False,
        prune: bool = False,
        clear_cache: bool = False,
    ) -> DeployAccepted:
        body = {"blueprint": blueprint, "repo": repo, "branch": branch, "services": services,
                "adopt": adopt, "prune": prune, "clear_cache": clear_cache}  # fmt: skip
        return DeployAccepted.model_validate(self._request("POST", "/v1/deploys", json=body))

    def deploy_status(self, deploy_id: int) -> OperationView:
        return OperationView.model_validate(self._request("GET", f"/v1/deploys/{deploy_id}"))

    def events(self, deploy_id: int, after: int = 0) -> EventsPage:
        return EventsPage.model_validate(
            self._request("GET", f"/v1/deploys/{deploy_id}/events", params={"after": after})
        )

    def services(self) -> list[ServiceView]:
        return _SERVICES.validate_python(self._request("GET", "/v1/services"))

    def service(self, name: str) -> ServiceView:
        return ServiceView.model_validate(self._request("GET", f"/v1/services/{name}"))

    def releases(self, name: str) -> list[ReleaseView]:
        return _RELEASES.validate_python(self._request("GET", f"/v1/services/{name}/releases"))

    def rollback(self, name: str, to: int | None = None) -> RollbackAccepted:
        return RollbackAccepted.model_validate(
            self._request("POST", f"/v1/services/{name}/rollback", json={"to": to})
        )

    def scale(self, name: str, instances: int) -> ScaleAccepted:
        return ScaleAccepted.model_validate(
            self._request("POST", f"/v1/services/{name}/scale", json={"instances": instances})
        )

    def logs(
        self, name: str, *, build: bool = False, lines: int = 200, release: int | None = None
    ) -> list[str]:
        params: dict[str, Any] = {"build": build, "lines": lines}
        if release is not None:
            params["release"] = release
        data = self._request("GET", f"/v1/services/{name}/logs", params=params)
        return LogLines.model_validate(data).lines

    def follow_logs(
        self, name: str, *, build: bool = False, lines: int = 50, release: int | None = None
    ) -> Iterator[str]:
        params: dict[str, Any] = {"build": build, "lines": lines, "follow": True}
        if release is not None:
            params["release"] = release
        try:
            with self._http.stream(
                "GET", f"/v1/services/{name}/logs", params=params, timeout=None
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise error_from_dict(response.json())
                yield from response.iter_lines()
        except httpx.TransportError as exc:
            raise DaemonUnavailable(f"Lost the connection to the daemon: {exc}") from exc

    def datastores(self) -> list[DatastoreView]:
        return TypeAdapter(list[DatastoreView]).validate_python(
            self._request("GET", "/v1/datastores")
        )

    def datastore(self, name: str) -> DatastoreInfo:
        return DatastoreInfo.model_validate(
            self._request("GET", f"/v1/datastores/{quote(name, safe='')}")
        )

    def backup(self, name: str, kind: str | None = None) -> DataOpAccepted:
        data = self._request("POST", f"{_datastore_path(name)}/backups", json={"kind": kind})
        return DataOpAccepted.model_validate(data)

    def backups(self, name: str) -> BackupsView:
        return BackupsView.model_validate(self._request("GET", f"{_datastore_path(name)}/backups"))

    def restore(self, name: str, body: RestoreBody) -> DataOpAccepted:
        data = self._request("POST", f"{_datastore_path(name)}/restore",
                             json=body.model_dump(exclude_none=True))  # fmt: skip
        return DataOpAccepted.model_validate(data)

    def drill(self, name: str) -> DataOpAccepted:
        return DataOpAccepted.model_validate(
            self._request("POST", f"{_datastore_path(name)}/drills")
        )

    def drills(self, name: str) -> list[DrillView]:
        data = self._request("GET", f"{_datastore_path(name)}/drills")
        return TypeAdapter(list[DrillView]).validate_python(data)

    def delete_datastore(self, name: str) -> DeleteResult:
        data = self._request("DELETE", _datastore_path(name), params={"confirm": "true"})
        return DeleteResult.model_validate(data)

    def rotate_env(self, service: str, key: str) -> EnvChanged:
        path = f"/v1/services/{quote(service, safe='')}/env/{quote(key, safe='')}/rotate"
        return EnvChanged.model_validate(self._request("POST", path))

    def rotate_key(self) -> KeyRotated:
        return KeyRotated.model_validate(self._request("POST", "/v1/secrets/rotate-key"))

    def env(self, service: str, reveal: bool = False) -> EnvView:
        data = self._request("GET", f"/v1/services/{quote(service, safe='')}/env",
                             params={"reveal": "true" if reveal else "false"})  # fmt: skip
        return EnvView.model_validate(data)

    def set_env(self, service: str, body: EnvBody) -> EnvChanged:
        data = self._request("PUT", f"/v1/services/{quote(service, safe='')}/env",
                             json=body.model_dump())  # fmt: skip
        return EnvChanged.model_validate(data)

    def disk_snapshots(self, service: str) -> list[DiskSnapshotView]:
        data = self._request("GET", f"/v1/services/{quote(service, safe='')}/disk/snapshots")
        return TypeAdapter(list[DiskSnapshotView]).validate_python(data)

    def disk_snapshot(self, service: str) -> DiskSnapshotView:
        data = self._request("POST", f"/v1/services/{quote(service, safe='')}/disk/snapshots")
        return DiskSnapshotView.model_validate(data)

    def disk_restore(self, service: str, snapshot: str) -> DiskRestoreAccepted:
        data = self._request("POST", f"/v1/services/{quote(service, safe='')}/disk/restore",
                             json={"snapshot": snapshot})  # fmt: skip
        return DiskRestoreAccepted.model_validate(data)

    def datastore_logs(self, name: str, lines: int = 200) -> list[str]:
        data = self._request("GET", f"{_datastore_path(name)}/logs", params={"lines": lines})
        return LogLines.model_validate(data).lines

    def datastore_client(self, name: str, args: list[str]) -> ClientCommand:
        data = self._request(
            "POST", f"/v1/datastores/{quote(name, safe='')}/client", json={"args": args}
        )
        return ClientCommand.model_validate(data)

    def shutdown(self, stop_services: bool = True) -> ShutdownAccepted:
        return ShutdownAccepted.model_validate(
            self._request("POST", "/v1/shutdown", params={"stop_services": stop_services})
        )

    def promote(self, body: PromoteBody) -> PromoteAccepted:
        data = self._request("POST", "/v1/promote", json=body.model_dump())
        return PromoteAccepted.model_validate(data)

    # triggers (git remotes, hooks) --------------------------------------------------------
    def add_repo(self, body: RepoBody) -> RepoView:
        return RepoView.model_validate(self._request("POST", "/v1/repos", json=body.model_dump()))

    def receive(self, name: str, body: ReceiveBody) -> ReceiveResult:
        data = self._request("POST", f"/v1/repos/{quote(name, safe='')}/receive",
                             json=body.model_dump())  # fmt: skip
        return ReceiveResult.model_validate(data)

    def trigger(self, ticket_id: int) -> TicketView:
        return TicketView.model_validate(self._request("GET", f"/v1/triggers/{ticket_id}"))

    def hooks(self, service: str, rotate: bool = False) -> HooksView:
        path = f"/v1/services/{quote(service, safe='')}/hooks"
        data = self._request("POST", path + "/rotate") if rotate else self._request("GET", path)
        return HooksView.model_validate(data)

    def wait(
        self,
        deploy_id: int,
        on_event: Callable[[EventView], None] | None = None,
        poll_s: float = 0.3,
        timeout_s: float = 3600.0,
    ) -> OperationView:
        """Poll events until the operation finishes; returns the final operation."""
        after = 0

        def finished() -> OperationView | None:
            nonlocal after
            page = self.events(deploy_id, after)
            for event in page.events:
                after = event.id
                if on_event is not None:
                    on_event(event)
            return page.deploy if page.deploy.status != "running" else None

        final = poll_until(SystemClock(), finished, timeout_s=timeout_s, interval_s=poll_s)
        if final is None:
            raise ShipyardError(f"Gave up waiting for operation #{deploy_id}.")
        return final


_SERVICES: TypeAdapter[list[ServiceView]] = TypeAdapter(list[ServiceView])
_RELEASES: TypeAdapter[list[ReleaseView]] = TypeAdapter(list[ReleaseView])


def _datastore_path(name: str) -> str:
    return f"/v1/datastores/{quote(name, safe='')}"
