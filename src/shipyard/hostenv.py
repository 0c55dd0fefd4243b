"""What Shipyard's processes may see of the daemon's own environment, captured once at start-up.

Builds and instances get an environment built from scratch (``builds/environment.py``); the only
things taken from the host are its CA and proxy settings and the directories where toolchains
live. Shipyard's own virtualenv is removed from that search path.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

SYSTEM_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
# The host's CA and proxy settings: builds (and apps calling out) need them behind a proxy or a
# TLS-inspecting gateway. Nothing else of the host's environment is passed on.
PASSTHROUGH = tuple(
    name
    for base in (
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "NODE_EXTRA_CA_CERTS",
        "PIP_CERT",
        "GIT_SSL_CAINFO",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "ALL_PROXY",
    )
    for name in ((base, base.lower()) if base.endswith("_PROXY") else (base,))
)


@dataclass(frozen=True)
class HostEnv:
    """The part of the daemon's environment that processes may see, read once at start-up.

    ``search_path`` is the daemon's PATH without Shipyard's own virtualenv: it is used to *find*
    toolchains (``node`` installed with nvm, say), never handed to a process as it is.
    """

    passthrough: Mapping[str, str] = field(default_factory=dict)
    search_path: tuple[str, ...] = SYSTEM_PATH
    user: str = ""

    @classmethod
    def capture(
        cls,
        environ: Mapping[str, str],
        own_prefixes: Iterable[str],
        extra_names: Iterable[str] = (),
    ) -> HostEnv:
        own = tuple(str(Path(p).absolute()) for p in own_prefixes if p)
        search = tuple(
            d
            for d in environ.get("PATH", "").split(os.pathsep)
            if d and not any(d == p or d.startswith(p + os.sep) for p in own)
        )
        names = (*PASSTHROUGH, *extra_names)
        return cls(
            passthrough={n: environ[n] for n in names if environ.get(n)},
            search_path=search or SYSTEM_PATH,
            user=environ.get("USER") or environ.get("LOGNAME") or "",
        )


def base_python() -> str:
    """The interpreter Shipyard itself runs on, outside Shipyard's virtualenv."""
    return str(getattr(sys, "_base_executable", "") or sys.executable)
