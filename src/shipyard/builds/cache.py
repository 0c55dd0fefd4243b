"""The build cache: package managers' download caches kept between builds of a service.

``<SHIPYARD_HOME>/cache/<service>/`` (0700) holds one directory per tool; a build's
environment points each tool at its own, so a rebuild with unchanged lockfiles downloads
nothing. Only caches live here, never installed trees (``node_modules`` and the virtualenv are
each release's own): removing it (``clear_build_cache``, ``shipyard deploy --clear-cache``)
makes the next build slower, never different.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from shipyard.context import Context
from shipyard.settings import Settings

# tool -> variables pointing it at its cache directory (relative to the service's cache)
CACHE_VARS: dict[str, dict[str, str]] = {
    "npm": {"npm_config_cache": "npm"},
    "yarn": {"YARN_CACHE_FOLDER": "yarn"},  # yarn 1
    "yarn-berry": {"YARN_GLOBAL_FOLDER": "yarn-berry", "YARN_ENABLE_GLOBAL_CACHE": ""},
    "pnpm": {"npm_config_store_dir": "pnpm-store", "npm_config_cache_dir": "pnpm-cache"},
    "bun": {"BUN_INSTALL_CACHE_DIR": "bun"},
    "pip": {"PIP_CACHE_DIR": "pip"},
    "uv": {"UV_CACHE_DIR": "uv"},
    "poetry": {"POETRY_CACHE_DIR": "poetry"},
}
_FLAGS = {"YARN_ENABLE_GLOBAL_CACHE": "true"}


def cache_root(settings: Settings) -> Path:
    return settings.home / "cache"


def service_cache(settings: Settings, service: str) -> Path:
    if not service or "/" in service or service in (".", ".."):
        raise ValueError(f"not a service name: {service!r}")
    return cache_root(settings) / service


def ensure_service_cache(settings: Settings, service: str) -> Path:
    """The service's cache directory, created 0700 (its parent too)."""
    root = cache_root(settings)
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = service_cache(settings, service)
    path.mkdir(mode=0o700, exist_ok=True)
    for p in (root, path):
        os.chmod(p, 0o700)
    return path


def cache_env(cache: Path) -> dict[str, str]:
    """The variables that point every supported package manager at ``cache``."""
    env: dict[str, str] = {}
    for variables in CACHE_VARS.values():
        for name, sub in variables.items():
            env[name] = _FLAGS[name] if name in _FLAGS else str(cache / sub)
    return env


def _settings(settings_or_ctx: Settings | Context) -> Settings:
    return settings_or_ctx if isinstance(settings_or_ctx, Settings) else settings_or_ctx.settings


def clear_build_cache(settings_or_ctx: Settings | Context, service: str) -> bool:
    """Remove ``service``'s build cache. True if there was one. Its next build downloads
    everything again (and fills the cache anew)."""
    path = service_cache(_settings(settings_or_ctx), service)
    if not path.exists() and not path.is_symlink():
        return False
    if path.is_symlink() or not path.is_dir():
        path.unlink()
        return True
    # Move it aside first: a build that starts meanwhile gets a fresh, empty cache.
    doomed = path.with_name(f".{path.name}.clearing.{os.getpid()}")
    shutil.rmtree(doomed, ignore_errors=True)
    path.rename(doomed)
    shutil.rmtree(doomed, ignore_errors=True)
    return True
