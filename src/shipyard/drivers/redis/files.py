"""The files of a Key Value instance on disk: its data directory and its redis.conf.

Layout (the recommended one; every path is the caller's choice):

* ``data_dir/`` owned by the server's account (``service_account("redis")``), mode 0700:
  ``dump.rdb``, ``appendonlydir/``, and ``redis.conf`` (:func:`config_path`). The config file
  lives in a directory the account can write because CONFIG REWRITE (the end of a restore)
  replaces it through a temporary file beside it; a private one because the file holds the
  password's hash.

:func:`write_config` refuses ``appendonly yes`` for a data directory holding ``dump.rdb`` and
no AOF directory: such a server would ignore dump.rdb, start empty, and its next save would
overwrite the snapshot (a restore uses backup.prepare_restore / finish_restore instead).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from shipyard.drivers.local.users import Account
from shipyard.drivers.redis.config import AOF_DIR, CONFIG_FILE, RDB_FILE, KeyValueConfig
from shipyard.drivers.redis.config import render_config as _render
from shipyard.errors import RuntimeFailure


def config_path(cfg: KeyValueConfig) -> Path:
    """Where the config file of ``cfg`` goes in the recommended layout."""
    return cfg.data_dir / CONFIG_FILE


def has_data(data_dir: Path) -> bool:
    """True when ``data_dir`` holds a dataset (dump.rdb or an AOF directory)."""
    return (data_dir / RDB_FILE).exists() or (data_dir / AOF_DIR).exists()


def aof_missing(data_dir: Path) -> bool:
    """True when ``data_dir`` holds dump.rdb but no AOF directory: a server started there with
    ``appendonly yes`` would start empty."""
    return (data_dir / RDB_FILE).exists() and not (data_dir / AOF_DIR).exists()


def write_config(
    cfg: KeyValueConfig, path: Path, account: Account, *, appendonly: bool = True
) -> None:
    """Write ``render_config(cfg, appendonly=...)`` to ``path`` atomically, owned by
    ``account``, mode 0600. RuntimeFailure (nothing written) when ``appendonly`` would make the
    server ignore the data directory's dump.rdb."""
    if appendonly and aof_missing(cfg.data_dir):
        raise RuntimeFailure(
            f"Key Value data directory {cfg.data_dir} holds {RDB_FILE} but no {AOF_DIR}/: "
            "a server started with appendonly yes would ignore the snapshot and start empty. "
            "Start it through a restore (render the config with appendonly=False, then "
            "finish_restore), or move the snapshot away",
            fields={"data_dir": str(cfg.data_dir)},
        )
    write_owned(path, _render(cfg, appendonly=appendonly), account)


def write_owned(path: Path, text: str, account: Account, mode: int = 0o600) -> None:
    """``text`` into ``path`` through a temporary file beside it, owned by ``account``."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        own(tmp, account, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def own(path: Path, account: Account, mode: int = 0o600) -> None:
    """``path`` (a file) owned by ``account`` with ``mode``."""
    if not account.is_current or os.geteuid() == 0:
        os.chown(path, account.uid, account.gid)
    path.chmod(mode)


def writable_by(directory: Path, account: Account) -> bool:
    """True when ``account`` can create files in ``directory`` (owner with write permission,
    or the account is ours and the system says so)."""
    try:
        st = directory.stat()
    except OSError:
        return False
    if account.is_current:
        return os.access(directory, os.W_OK | os.X_OK)
    return st.st_uid == account.uid and st.st_mode & 0o300 == 0o300
