"""Immutable numbered releases on disk.

    services/<name>/releases/<N>/app/        the built artifact (a copy of the repository)
    services/<name>/releases/<N>/build.log   build and pre-deploy output
    services/<name>/instances/<id>.log       stdout+stderr of one instance

The database row (releases table) holds the status, the config digest, the git commit, the
spec snapshot and the encrypted env snapshot; the directory is never changed after the build.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ReleasePaths:
    dir: Path

    @property
    def app(self) -> Path:
        return self.dir / "app"

    @property
    def build_log(self) -> Path:
        return self.dir / "build.log"

    def workdir(self, root_dir: str) -> Path:
        return self.app / root_dir if root_dir else self.app


def release_paths(services_dir: Path, service: str, number: int) -> ReleasePaths:
    return ReleasePaths(services_dir / service / "releases" / str(number))


def instance_log(services_dir: Path, service: str, instance_id: str) -> Path:
    return services_dir / service / "instances" / f"{instance_id}.log"
