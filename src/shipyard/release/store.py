"""Immutable numbered releases on disk.

    services/<name>/releases/<N>/app/        the built artifact (a copy of the repository)
    services/<name>/releases/<N>/venv/       a Python release's own virtualenv
    services/<name>/releases/<N>/build-log/  build and pre-deploy output (a log directory)
    services/<name>/instances/<id>/          stdout+stderr of one instance (a log directory)
    services/<name>/build-home, build-tmp    HOME and TMPDIR of builds (caches persist)
    services/<name>/home, tmp                HOME and TMPDIR of pre-deploy commands and instances

The database row (releases table) holds the status, the config digest, the git commit, the
spec snapshot and the encrypted env snapshot; the directory is never changed after the build.
A release made by an env change (`shipyard env set`) runs the artifact of the release it
changes: its ``dir`` is that release's directory (see :func:`artifact`), its logs its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shipyard.records import Release


@dataclass(frozen=True)
class ReleasePaths:
    dir: Path

    @property
    def app(self) -> Path:
        return self.dir / "app"

    @property
    def venv(self) -> Path:
        return self.dir / "venv"

    @property
    def build_log(self) -> Path:
        """A log directory (see drivers/local/logfiles.py); releases built before log
        directories have a plain ``build.log`` file instead, which readers also take."""
        legacy = self.dir / "build.log"
        return legacy if legacy.is_file() else self.dir / "build-log"

    def workdir(self, root_dir: str) -> Path:
        return self.app / root_dir if root_dir else self.app


def artifact(release: Release) -> ReleasePaths:
    """Where ``release``'s built artifact is: its own directory, or the one it shares."""
    return ReleasePaths(Path(release.dir))


@dataclass(frozen=True)
class ServicePaths:
    """Per-service directories of its own: builds and running instances never share a HOME, so
    a build's cache operations never wait on a lock the live app holds."""

    dir: Path

    @property
    def build_home(self) -> Path:
        return self.dir / "build-home"

    @property
    def build_tmp(self) -> Path:
        return self.dir / "build-tmp"

    @property
    def home(self) -> Path:
        return self.dir / "home"

    @property
    def tmp(self) -> Path:
        return self.dir / "tmp"

    def ensure(self) -> ServicePaths:
        for path in (self.build_home, self.build_tmp, self.home, self.tmp):
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return self


def service_paths(services_dir: Path, service: str) -> ServicePaths:
    return ServicePaths(services_dir / service)


def release_paths(services_dir: Path, service: str, number: int) -> ReleasePaths:
    return ReleasePaths(services_dir / service / "releases" / str(number))


def instance_log(services_dir: Path, service: str, instance_id: str) -> Path:
    return services_dir / service / "instances" / instance_id
