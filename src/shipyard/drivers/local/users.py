"""The operating-system accounts processes run as.

Shipyard runs a datastore's server (PostgreSQL refuses to run as root) and its tools as an
unprivileged account when Shipyard itself is root, and as Shipyard's own account otherwise. The
account owns the datastore's files; nothing else of SHIPYARD_HOME is readable to it (the home is
traversable, 0711, so the account can reach its own directory by path without listing others).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipyard.errors import RuntimeFailure


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int

    @property
    def is_current(self) -> bool:
        return self.uid == os.geteuid()


def current() -> Account:
    entry = pwd.getpwuid(os.geteuid())
    return Account(entry.pw_name, entry.pw_uid, entry.pw_gid)


def account(name: str | None) -> Account:
    """The account ``name`` (None: Shipyard's own). RuntimeFailure naming it if it is missing."""
    if name is None:
        return current()
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise RuntimeFailure(
            f"no system account '{name}' on this machine: install the package that creates it "
            "(scripts/install-system.sh) or run Shipyard as an unprivileged user",
            fields={"user": name},
        ) from None
    return Account(entry.pw_name, entry.pw_uid, entry.pw_gid)


def service_account(preferred: str) -> Account:
    """The account a datastore runs as: ``preferred`` (e.g. the Debian package's ``postgres``)
    when Shipyard runs as root, else Shipyard's own account."""
    return account(preferred) if os.geteuid() == 0 else current()


def popen_kwargs(user: str | None) -> dict[str, Any]:
    """subprocess.Popen arguments that run a child as ``user`` (its uid, its primary group, no
    supplementary groups); {} for Shipyard's own account."""
    if user is None:
        return {}
    acct = account(user)
    if acct.is_current:
        return {}
    return {"user": acct.uid, "group": acct.gid, "extra_groups": []}


def give(path: Path, acct: Account, mode: int = 0o700) -> None:
    """``path`` (a directory, created if missing) and everything in it owned by ``acct``;
    the directory itself gets ``mode``."""
    path.mkdir(parents=True, exist_ok=True)
    if not acct.is_current or os.geteuid() == 0:
        for root, dirs, files in os.walk(path):
            for name in (*dirs, *files):
                os.lchown(os.path.join(root, name), acct.uid, acct.gid)
        os.chown(path, acct.uid, acct.gid)
    path.chmod(mode)


def ensure_reachable(path: Path, acct: Account) -> None:
    """``acct`` can traverse every directory above ``path`` (a server reaches its own files
    by path). A directory that others may not traverse (root's home, 0700, holds the default
    SHIPYARD_HOME) gets an ACL entry letting exactly that account through (``u:NAME:x``),
    nothing more; without root or setfacl, RuntimeFailure naming the directory."""
    if acct.is_current:
        return
    setfacl = shutil.which("setfacl")
    for parent in [path, *path.parents]:
        info = parent.stat()
        if info.st_uid == acct.uid or info.st_mode & 0o001:
            continue
        if info.st_gid == acct.gid and info.st_mode & 0o010:
            continue
        if os.geteuid() == 0 and setfacl:
            done = subprocess.run([setfacl, "-m", f"u:{acct.name}:x", str(parent)],
                                  capture_output=True, text=True, check=False)  # fmt: skip
            if done.returncode == 0:
                continue
        raise RuntimeFailure(
            f"the '{acct.name}' account (which runs the datastore) cannot reach {path}: "
            f"{parent} is mode {oct(info.st_mode & 0o777)}; allow it through "
            f"(`setfacl -m u:{acct.name}:x {parent}`, or `chmod o+x {parent}`) or set "
            "SHIPYARD_HOME elsewhere",
            fields={"path": str(parent)},
        )


def binary(name: str, *candidates: str) -> str | None:
    """``name`` on PATH, else the first of ``candidates`` that exists."""
    found = shutil.which(name)
    if found:
        return found
    return next((c for c in candidates if os.access(c, os.X_OK)), None)
