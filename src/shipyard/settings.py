"""Settings: built once (from the environment or explicitly) and passed in; never module-level."""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from shipyard.errors import UsageError
from shipyard.hostenv import HostEnv, base_python

DEFAULT_HTTP_PORT = 8080
DEFAULT_API_PORT = 8787
DEFAULT_INTERNAL_PORT_BASE = 20000


@dataclass(frozen=True)
class Settings:
    home: Path
    http_port: int = DEFAULT_HTTP_PORT
    api_port: int = DEFAULT_API_PORT
    # Services' internal listeners (fromService host:port) take ports from here up; below the
    # kernel's ephemeral range. Two Shipyards on one machine need different bases.
    internal_port_base: int = DEFAULT_INTERNAL_PORT_BASE
    # Address the public HTTP listener binds; loopback by default (a dev machine).
    http_bind: str = "127.0.0.1"
    haproxy_bin: str = "haproxy"
    # Defaults for rollouts; a service may override them in shipyard.yaml.
    health_timeout_s: float = 60.0
    drain_timeout_s: float = 30.0
    health_interval_s: float = 0.25
    build_timeout_s: float = 1800.0
    # How long HAProxy holds a request to a deployed service that has no usable instance for
    # the moment (a recreate rollout, a restart) before it answers 503.
    request_hold_s: float = 20.0
    # Services of one deploy wave (none references another) deployed at the same time.
    deploy_concurrency: int = 4
    # What processes may see of the daemon's environment (CA and proxy settings), and where
    # toolchains are looked for; never the daemon's environment itself.
    host: HostEnv = field(default_factory=HostEnv)
    # The base interpreter of Python services' virtualenvs.
    python_bin: str = field(default_factory=base_python)
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def toolchains_dir(self) -> Path:
        return self.home / "toolchains"

    @property
    def db_path(self) -> Path:
        return self.home / "state.db"

    @property
    def token_path(self) -> Path:
        return self.home / "token"

    @property
    def key_path(self) -> Path:
        return self.home / "secret.key"

    @property
    def haproxy_dir(self) -> Path:
        return self.home / "haproxy"

    @property
    def services_dir(self) -> Path:
        return self.home / "services"

    @property
    def daemon_pid_path(self) -> Path:
        return self.home / "daemon.pid"

    @property
    def daemon_log_path(self) -> Path:
        return self.home / "daemon.log"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def public_host(self, service: str) -> str:
        return f"{service}.localhost"

    def external_host(self, service_type: str, service: str) -> str:
        """RENDER_EXTERNAL_HOSTNAME: the public host of a web service, else its name; health
        checks send it as Host (Django's ALLOWED_HOSTS is often set to it)."""
        return self.public_host(service) if service_type == "web" else service

    def public_url(self, service: str) -> str:
        port = "" if self.http_port == 80 else f":{self.http_port}"
        return f"http://{self.public_host(service)}{port}"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)
        home = Path(env.get("SHIPYARD_HOME") or Path.home() / ".shipyard").expanduser()
        http_port = _port(env, "SHIPYARD_HTTP_PORT", DEFAULT_HTTP_PORT)
        api_port = _port(env, "SHIPYARD_API_PORT", DEFAULT_API_PORT)
        base = _port(env, "SHIPYARD_INTERNAL_PORT_BASE", DEFAULT_INTERNAL_PORT_BASE)
        _check_internal_region(
            base, {"SHIPYARD_HTTP_PORT": http_port, "SHIPYARD_API_PORT": api_port}
        )
        return cls(
            home=home.absolute(),
            http_port=http_port,
            api_port=api_port,
            internal_port_base=base,
            http_bind=env.get("SHIPYARD_HTTP_BIND", "127.0.0.1"),
            haproxy_bin=env.get("SHIPYARD_HAPROXY") or find_haproxy(env.get("PATH", "")),
            host=HostEnv.capture(
                env,
                own_prefixes=(sys.prefix, env.get("VIRTUAL_ENV", "")),
                extra_names=[
                    n.strip()
                    for n in env.get("SHIPYARD_BUILD_PASSTHROUGH", "").split(",")
                    if n.strip() and not n.strip().startswith("SHIPYARD_")
                ],
            ),
            python_bin=env.get("SHIPYARD_PYTHON") or base_python(),
            deploy_concurrency=_count(env, "SHIPYARD_DEPLOY_CONCURRENCY", 4),
        )


# The kernel's default ephemeral range starts here: instance ports come from above it, the
# services' internal listeners from [SHIPYARD_INTERNAL_PORT_BASE, INTERNAL_PORT_LIMIT).
INTERNAL_PORT_LIMIT = 32768


def _check_internal_region(base: int, listeners: dict[str, int]) -> None:
    if not 1024 <= base <= INTERNAL_PORT_LIMIT - 256:
        raise UsageError(
            f"SHIPYARD_INTERNAL_PORT_BASE has value {base}. Expected a port from 1024 to "
            f"{INTERNAL_PORT_LIMIT - 256}: services' internal listeners take the ports from "
            f"there up to {INTERNAL_PORT_LIMIT}."
        )
    for name, port in listeners.items():
        if base <= port < INTERNAL_PORT_LIMIT:
            raise UsageError(
                f"{name} has value {port}, inside the region of internal ports "
                f"({base}-{INTERNAL_PORT_LIMIT - 1}, SHIPYARD_INTERNAL_PORT_BASE). Choose a port "
                "outside it, or move the region."
            )


def find_haproxy(path: str) -> str:
    """HAProxy lives in /usr/sbin on Debian, which is not on a normal user's PATH."""
    found = shutil.which("haproxy", path=f"{path}:/usr/sbin:/usr/local/sbin:/sbin")
    return found or "haproxy"


def _port(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise UsageError(f"{name} has value {raw!r}. Not a valid port number.") from None
    if not 1 <= value <= 65535:
        raise UsageError(f"{name} has value {value}. A port must be between 1 and 65535.")
    return value


def _count(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= 64:
        raise UsageError(f"{name} has value {raw!r}. Expected a whole number from 1 to 64.")
    return int(raw)
