"""Settings: built once (from the environment or explicitly) and passed in; never module-level."""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from shipyard.blueprint.limits import BlueprintLimits
from shipyard.errors import UsageError
from shipyard.hostenv import HostEnv, base_python

DEFAULT_HTTP_PORT = 8080
DEFAULT_API_PORT = 8787
DEFAULT_INTERNAL_PORT_BASE = 20000
DEFAULT_DATA_PORT_BASE = 15400


@dataclass(frozen=True)
class Offsite:
    """An S3-compatible bucket that backups are also copied to (SHIPYARD_S3_*)."""

    endpoint: str  # host[:port] of its HTTPS endpoint
    bucket: str
    region: str
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    ca_file: Path | None = None  # the CA that signed its certificate (else the system's)
    prefix: str = "/shipyard"

    @classmethod
    def from_env(cls, env: dict[str, str]) -> Offsite | None:
        """SHIPYARD_S3_ENDPOINT (https://host[:port]), _BUCKET, _REGION (us-east-1),
        _ACCESS_KEY_ID, _SECRET_ACCESS_KEY, _CA_FILE, _PREFIX; None when no endpoint is set."""
        url = env.get("SHIPYARD_S3_ENDPOINT", "").strip()
        if not url:
            return None
        missing = [
            n for n in ("SHIPYARD_S3_BUCKET", "SHIPYARD_S3_ACCESS_KEY_ID",
                        "SHIPYARD_S3_SECRET_ACCESS_KEY") if not env.get(n)
        ]  # fmt: skip
        if missing:
            raise UsageError(f"SHIPYARD_S3_ENDPOINT is set but {', '.join(missing)} is not.")
        if not url.startswith("https://"):
            raise UsageError(
                f"SHIPYARD_S3_ENDPOINT has value {url!r}. Expected an https:// URL: pgBackRest "
                "speaks HTTPS only (set SHIPYARD_S3_CA_FILE for a private CA)."
            )
        endpoint = url.removeprefix("https://").rstrip("/")
        ca = env.get("SHIPYARD_S3_CA_FILE")
        prefix = "/" + env.get("SHIPYARD_S3_PREFIX", "shipyard").strip("/")
        return cls(
            endpoint=endpoint, bucket=env["SHIPYARD_S3_BUCKET"],
            region=env.get("SHIPYARD_S3_REGION") or "us-east-1",
            access_key=env["SHIPYARD_S3_ACCESS_KEY_ID"],
            secret_key=env["SHIPYARD_S3_SECRET_ACCESS_KEY"],
            ca_file=Path(ca) if ca else None, prefix=prefix,
        )  # fmt: skip


@dataclass(frozen=True)
class Settings:
    home: Path
    http_port: int = DEFAULT_HTTP_PORT
    api_port: int = DEFAULT_API_PORT
    # Services' internal listeners (fromService host:port) take ports from here up; below the
    # kernel's ephemeral range. Two Shipyards on one machine need different bases.
    internal_port_base: int = DEFAULT_INTERNAL_PORT_BASE
    # Managed datastores (PostgreSQL, Key Value) listen on stable ports from here up.
    data_port_base: int = DEFAULT_DATA_PORT_BASE
    # Address the public HTTP listener binds; loopback by default (a dev machine).
    http_bind: str = "127.0.0.1"
    haproxy_bin: str = "haproxy"
    # Defaults for rollouts; a service may override them in shipyard.yaml.
    health_timeout_s: float = 60.0
    drain_timeout_s: float = 30.0
    health_interval_s: float = 0.25
    build_timeout_s: float = 1800.0  # SHIPYARD_BUILD_TIMEOUT (seconds)
    # Toolchains (Node versions, corepack, venv templates): SHIPYARD_TOOLCHAIN_DIR, else
    # SHIPYARD_HOME/toolchains; and the npm registry Node versions come from.
    toolchain_dir: Path | None = None
    npm_registry: str = "https://registry.npmjs.org"
    # Webhooks, deploy hooks and git over HTTP answer on the public listener at this host
    # (and nothing else of the API does); watched branches are polled this often.
    platform_host: str = "shipyard.localhost"
    poll_interval_s: float = 60.0
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
    # Where a Blueprint or local repository given to the API by path may be: any of these
    # directories, never inside a system directory or SHIPYARD_HOME (see source_dir_allowed).
    source_dirs: tuple[Path, ...] = (Path("/"),)
    # The largest API request body (a Blueprint sent as content is JSON-escaped).
    api_max_body_bytes: int = 8 * 1024 * 1024
    # Builds and deploys need this much free space on SHIPYARD_HOME's disk (plus the source
    # they copy); below it `ps` and the health endpoint warn.
    min_free_bytes: int = 256 * 1000 * 1000
    blueprint_limits: BlueprintLimits = field(default_factory=BlueprintLimits)
    offsite: Offsite | None = None  # off-site copies of backups
    extra: dict[str, str] = field(default_factory=dict)

    def source_dir_allowed(self, path: Path) -> bool:
        """``path`` (resolved) lies in one of ``source_dirs`` and outside the system's own
        directories and SHIPYARD_HOME: the API never reads /etc/shadow or state.db for
        whoever holds the token."""
        real = path.resolve()
        if any(real.is_relative_to(d) for d in (*SYSTEM_DIRS, self.home.resolve())):
            return False
        return any(real.is_relative_to(d.resolve()) for d in self.source_dirs)

    @property
    def toolchains_dir(self) -> Path:
        return self.toolchain_dir or self.home / "toolchains"

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
    def data_dir(self) -> Path:
        """Managed datastores' directories (servers, their logs, local backups)."""
        return self.home / "data"

    @property
    def daemon_pid_path(self) -> Path:
        return self.home / "daemon.pid"

    @property
    def daemon_log_path(self) -> Path:
        """The daemon's own output: a log directory kept by its log writer (bounded)."""
        return self.home / "daemon-log"

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
            data_port_base=_port(env, "SHIPYARD_DATA_PORT_BASE", DEFAULT_DATA_PORT_BASE),
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
            source_dirs=_dirs(env, "SHIPYARD_SOURCE_DIRS") or (Path("/"),),
            api_max_body_bytes=_size(env, "SHIPYARD_API_MAX_BODY_BYTES", 8 * 1024 * 1024),
            blueprint_limits=BlueprintLimits.from_env(env),
            min_free_bytes=_megabytes(env, "SHIPYARD_MIN_FREE_MB", 256),
            offsite=Offsite.from_env(env),
            build_timeout_s=_seconds(env, "SHIPYARD_BUILD_TIMEOUT", 1800.0),
            toolchain_dir=next(iter(_dirs(env, "SHIPYARD_TOOLCHAIN_DIR")), None),
            npm_registry=env.get("SHIPYARD_NPM_REGISTRY") or "https://registry.npmjs.org",
            platform_host=_platform_host(env),
            poll_interval_s=_seconds(env, "SHIPYARD_POLL_INTERVAL_S", 60.0),
        )


# The kernel's default ephemeral range starts here: instance ports come from above it, the
# services' internal listeners from [SHIPYARD_INTERNAL_PORT_BASE, INTERNAL_PORT_LIMIT).
INTERNAL_PORT_LIMIT = 32768


# Never a source: what the system and its users keep there is not a Blueprint to deploy.
SYSTEM_DIRS = tuple(
    Path(p)
    for p in ("/etc", "/proc", "/sys", "/dev", "/boot", "/run", "/usr", "/bin", "/sbin",
              "/lib", "/lib64", "/var/lib", "/var/log", "/var/spool", "/var/mail")
)  # fmt: skip


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


def _dirs(env: dict[str, str], name: str) -> tuple[Path, ...]:
    raw = env.get(name, "")
    dirs = tuple(Path(p).expanduser() for p in raw.split(os.pathsep) if p.strip())
    for d in dirs:
        if not d.is_absolute():
            raise UsageError(
                f"{name} has {str(d)!r}. Expected absolute directories separated by '{os.pathsep}'."
            )
    return dirs


def _size(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or int(raw) < 1024:
        raise UsageError(f"{name} has value {raw!r}. Expected a number of bytes, at least 1024.")
    return int(raw)


def _megabytes(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default * 1000 * 1000
    if not raw.isdigit():
        raise UsageError(f"{name} has value {raw!r}. Expected a whole number of megabytes.")
    return int(raw) * 1000 * 1000


def _platform_host(env: dict[str, str]) -> str:
    host = env.get("SHIPYARD_PLATFORM_HOST", "shipyard.localhost").strip().lower().rstrip(".")
    labels = host.split(".")
    if not host or len(host) > 253 or not all(
        label and len(label) <= 63 and label.replace("-", "").isalnum()
        and not label.startswith("-") and not label.endswith("-") for label in labels
    ):  # fmt: skip
        raise UsageError(
            f"SHIPYARD_PLATFORM_HOST has value {host!r}. Expected a host name such as "
            "deploy.example.com (letters, digits and '-' in dot-separated labels)."
        )
    return host


def _seconds(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0.1 <= value <= 86400:
        raise UsageError(f"{name} has value {raw!r}. Expected seconds from 0.1 to 86400.")
    return value
