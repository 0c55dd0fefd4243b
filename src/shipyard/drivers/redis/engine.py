"""The Key Value engine (implements data/engines.py's DatastoreEngine) on Debian's Redis 7.

Files of an instance ``ds`` (under ``ds.dir``, SHIPYARD_HOME/data/<name>): ``data/`` owned by
the server's account (``redis`` when Shipyard is root), holding dump.rdb, appendonlydir/ and
redis.conf (written at every start; the password only as its SHA-256, see config.py);
``log/`` the server's log directory. The server listens on loopback only.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from shipyard.blueprint.spec import DatastoreSpec
from shipyard.data.engines import BackupEntry, DatastoreFacts, RestorePoint
from shipyard.drivers.local.sealed import unseal
from shipyard.drivers.local.users import Account, ensure_reachable, give, service_account
from shipyard.drivers.redis.backup import RdbCheck, check_rdb, finish_restore
from shipyard.drivers.redis.backup import backup as redis_backup
from shipyard.drivers.redis.client import KeyValueClient
from shipyard.drivers.redis.config import (
    DEFAULT_MAXMEMORY_POLICY,
    RDB_FILE,
    KeyValueConfig,
    plan_memory,
    server_command,
)
from shipyard.drivers.redis.files import config_path, has_data, own, write_config
from shipyard.drivers.s3 import S3, S3Endpoint
from shipyard.errors import RuntimeFailure, UsageError
from shipyard.records import Datastore
from shipyard.run.runtime import ProcessSpec
from shipyard.settings import Offsite

HOST = "127.0.0.1"


class KeyValueEngine:
    kind = "keyvalue"
    stop_signal = int(signal.SIGTERM)  # Redis flushes its AOF and saves on SIGTERM
    stop_grace_s = 60.0

    def __init__(
        self, home: Path | None = None, server: str | None = None, offsite: Offsite | None = None
    ) -> None:
        """``home``: SHIPYARD_HOME (backups go to its backups/keyvalue/<name>/); ``offsite``:
        the S3 bucket backups are also copied to."""
        self.home = home
        self.server = server or shutil.which("redis-server") or "/usr/bin/redis-server"
        self.offsite = offsite

    def account(self) -> Account:
        return service_account("redis")

    def version_for(self, spec: DatastoreSpec) -> str:
        try:
            out = subprocess.run([self.server, "--version"], capture_output=True, text=True,
                                 timeout=10, check=False).stdout  # fmt: skip
        except OSError:
            out = ""
        found = re.search(r"v=(\d+)\.", out)
        if not found:
            raise UsageError(
                f"Key Value '{spec.name}': Redis is not installed on this machine "
                f"({self.server}); install it with `apt-get install redis-server` "
                "(scripts/install-system.sh does)",
                fields={"datastore": spec.name},
            )
        return found.group(1)

    def check(self, spec: DatastoreSpec) -> None:
        self.version_for(spec)
        try:
            plan_memory(spec.plan)
        except UsageError as exc:
            raise UsageError(f"Key Value '{spec.name}': {exc.message}",
                             fields={"datastore": spec.name}) from exc  # fmt: skip

    def new_secrets(self, spec: DatastoreSpec) -> dict[str, str]:
        return {"password": secrets.token_urlsafe(24), "backup_key": secrets.token_hex(32)}

    def config(self, ds: Datastore, secrets: Mapping[str, str]) -> KeyValueConfig:
        return KeyValueConfig(
            port=ds.port,
            data_dir=data_dir(ds),
            password=secrets["password"],
            maxmemory_bytes=plan_memory(ds.spec.plan),
            maxmemory_policy=ds.spec.maxmemory_policy or DEFAULT_MAXMEMORY_POLICY,
        )

    def provision(
        self, ds: Datastore, secrets: Mapping[str, str], primary: Datastore | None
    ) -> None:
        acct = self.account()
        base = Path(ds.dir)
        base.mkdir(parents=True, exist_ok=True)
        base.chmod(0o711)
        ensure_reachable(base, acct)
        give(data_dir(ds), acct, 0o700)
        cfg = self.config(ds, secrets)
        # a restored dataset starts with appendonly no (else Redis would ignore dump.rdb)
        write_config(cfg, config_path(cfg), acct, appendonly=not _pending(ds).exists())

    def process(self, ds: Datastore, secrets: Mapping[str, str], log_dir: Path) -> ProcessSpec:
        command = server_command(config_path(self.config(ds, secrets)), self.server)
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
        return ProcessSpec(command, Path("/"), env, log_dir, user=self.account().name)

    def client(self, ds: Datastore, secrets: Mapping[str, str]) -> KeyValueClient:
        return KeyValueClient(HOST, ds.port, secrets["password"], timeout_s=2.0)

    def wait_ready(
        self, ds: Datastore, secrets: Mapping[str, str], timeout_s: float,
        alive: Callable[[], bool],
    ) -> None:  # fmt: skip
        with self.client(ds, secrets) as client:
            try:
                client.wait_ready(timeout_s, alive)
            except RuntimeFailure as exc:
                raise RuntimeFailure(
                    f"{ds.label}: not ready: {exc.message}; see `shipyard db logs {ds.name}`",
                    fields={"datastore": ds.name},
                ) from exc

    def configure(self, ds: Datastore, secrets: Mapping[str, str]) -> None:
        """Everything is in its redis.conf; a restored dataset gets its AOF here."""
        pending = _pending(ds)
        if not pending.exists():
            return
        expected = RdbCheck(**json.loads(pending.read_text()))
        cfg = self.config(ds, secrets)
        with self.client(ds, secrets) as client:
            finish_restore(client, config_path(cfg), expected=expected)
        pending.unlink()

    def connection(self, ds: Datastore, secrets: Mapping[str, str]) -> dict[str, str]:
        password, port = secrets["password"], str(ds.port)
        return {
            "connectionString": f"redis://default:{quote(password, safe='')}@{HOST}:{port}",
            "host": HOST,
            "port": port,
            "hostport": f"{HOST}:{port}",
        }

    def facts(self, ds: Datastore, secrets: Mapping[str, str]) -> DatastoreFacts:
        try:
            with self.client(ds, secrets) as client:
                info = client.info()
        except RuntimeFailure:
            return DatastoreFacts()
        return DatastoreFacts(
            size_bytes=info.used_memory,
            connections=info.connected_clients,
            details={
                "keys": info.keys,
                "maxmemory_bytes": info.maxmemory,
                "maxmemory_policy": info.maxmemory_policy,
                "aof_enabled": info.aof_enabled,
                "rdb_last_bgsave_status": info.rdb_last_bgsave_status,
                "rdb_last_save_time": info.rdb_last_save_time,
                "version": info.version,
            },
        )

    def client_command(
        self, ds: Datastore, secrets: Mapping[str, str], args: list[str]
    ) -> tuple[list[str], dict[str, str]]:
        cli = shutil.which("redis-cli") or "/usr/bin/redis-cli"
        return [cli, "-h", HOST, "-p", str(ds.port), *args], {"REDISCLI_AUTH": secrets["password"]}

    # -- backups ----------------------------------------------------------------------------

    def backups_dir(self, ds: Datastore) -> Path:
        if self.home is None:
            raise RuntimeFailure("this Key Value engine has no backup directory")
        return self.home / "backups" / "keyvalue" / Path(ds.dir).name

    def _s3(self) -> tuple[S3, Offsite] | None:
        if self.offsite is None:
            return None
        o = self.offsite
        endpoint = S3Endpoint(
            url=f"https://{o.endpoint}", access_key=o.access_key, secret_key=o.secret_key,
            region=o.region, ca_file=o.ca_file,
        )  # fmt: skip
        return S3(endpoint), o

    def _key(self, ds: Datastore, name: str) -> str:
        assert self.offsite is not None
        return f"{self.offsite.prefix.strip('/')}/keyvalue/{Path(ds.dir).name}/{name}"

    def backup(self, ds: Datastore, secrets: Mapping[str, str], kind: str) -> list[BackupEntry]:
        """BGSAVE, the snapshot checked by redis-check-rdb, sealed with the instance's backup
        key into backups/keyvalue/<name>/, copied to S3 when configured; backups older than
        the retention removed."""
        folder = self.backups_dir(ds)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        name = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{secrets_token()}.rdb.sealed"
        dest = folder / name
        with self.client(ds, secrets) as client:
            client.timeout_s = 30.0
            taken = redis_backup(client, data_dir(ds), dest, _backup_key(secrets),
                                 scratch_dir=folder)  # fmt: skip
        meta = {"started_at": taken.started_at, "finished_at": taken.finished_at,
                "rdb_bytes": taken.rdb_bytes, "keys": taken.keys, "expires": taken.expires,
                "sha256": taken.rdb_sha256, "snapshot_at": taken.snapshot_at,
                "locations": ["local"]}  # fmt: skip
        store = self._s3() if ds.spec.backups.offsite else None
        if store is not None:
            s3, offsite = store
            s3.ensure_bucket(offsite.bucket)
            s3.put_file(offsite.bucket, self._key(ds, name), dest)
            meta["locations"] = ["local", "s3"]
        _meta_path(dest).write_text(json.dumps(meta))
        self._expire(ds)
        return [_entry(dest, meta)]

    def _expire(self, ds: Datastore) -> None:
        cutoff = time.time() - ds.spec.backups.retention_days * 86400
        entries = self._local(ds)
        for path, meta in entries[:-1]:  # never the newest
            if float(meta["finished_at"]) < cutoff:
                path.unlink(missing_ok=True)
                _meta_path(path).unlink(missing_ok=True)

    def _local(self, ds: Datastore) -> list[tuple[Path, dict[str, Any]]]:
        folder = self.backups_dir(ds)
        found = []
        for meta_file in sorted(folder.glob("*.rdb.sealed.json")) if folder.is_dir() else []:
            sealed = meta_file.with_suffix("")
            try:
                meta = json.loads(meta_file.read_text())
            except (OSError, ValueError):
                continue
            if sealed.exists() or "s3" in meta.get("locations", []):
                found.append((sealed, meta))
        return sorted(found, key=lambda e: float(e[1]["finished_at"]))

    def backups(self, ds: Datastore, secrets: Mapping[str, str]) -> list[BackupEntry]:
        return [_entry(path, meta) for path, meta in self._local(ds)]

    def restored_to(self, ds: Datastore, secrets: Mapping[str, str]) -> float | None:
        marker = Path(ds.dir) / "restored-from.json"
        if not marker.exists():
            return None
        return float(json.loads(marker.read_text())["snapshot_at"])

    def restorable_since(self, ds: Datastore, secrets: Mapping[str, str]) -> float | None:
        found = self._local(ds)
        return float(found[0][1]["finished_at"]) if found else None

    def restore_files(
        self, source: Datastore, secrets: Mapping[str, str], point: RestorePoint,
        dest: Datastore, location: str | None = None,
    ) -> None:  # fmt: skip
        """The chosen snapshot (Key Value has no log to replay: a time restores the newest
        snapshot taken at or before it) unsealed into ``dest``'s new data directory as
        dump.rdb, checked; ``dest`` then starts with appendonly off and gets its AOF in
        ``configure``."""
        found = self._local(source)
        chosen = _choose(found, point, source)
        path, meta = chosen
        acct = self.account()
        base = Path(dest.dir)
        base.mkdir(parents=True, exist_ok=True)
        base.chmod(0o711)
        target = data_dir(dest)
        if has_data(target):
            raise UsageError(f"{dest.label} already holds data: a restore needs a new one")
        give(target, acct, 0o700)
        sealed = path
        scratch: Path | None = None
        if location == "s3" or not path.exists():
            store = self._s3()
            if store is None:
                raise UsageError(f"backup {path.name} is not on this machine and no S3 is set up")
            s3, offsite = store
            scratch = target / ".download.sealed"
            s3.get_file(offsite.bucket, self._key(source, path.name), scratch)
            sealed = scratch
        try:
            rdb = target / RDB_FILE
            unseal(sealed, rdb, _backup_key(secrets))
            check = check_rdb(rdb, label=path.name)
        finally:
            if scratch is not None:
                scratch.unlink(missing_ok=True)
        own(rdb, acct)
        (base / "restored-from.json").write_text(
            json.dumps(
                {"backup": path.name, "snapshot_at": meta.get("snapshot_at") or meta["finished_at"]}
            )
        )
        _pending(dest).write_text(json.dumps(
            {"keys": check.keys, "expires": check.expires, "already_expired": check.already_expired}
        ))  # fmt: skip


def _choose(
    found: list[tuple[Path, dict[str, Any]]], point: RestorePoint, source: Datastore
) -> tuple[Path, dict[str, Any]]:
    if not found:
        raise UsageError(f"{source.label} has no backup yet: take one with "
                         f"`shipyard db backup {source.name}`")  # fmt: skip
    if point.kind == "backup":
        for entry in found:
            if entry[0].name == point.backup_id:
                return entry
        ids = ", ".join(e[0].name for e in found)
        raise UsageError(f"{source.label} has no backup '{point.backup_id}' (backups: {ids})")
    if point.kind == "time":
        when = float(point.time or 0)
        if when > time.time():
            raise UsageError("the restore time is in the future")
        before = [e for e in found if float(e[1]["finished_at"]) <= when]
        if not before:
            first = time.strftime(
                "%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(found[0][1]["finished_at"]))
            )
            raise UsageError(
                f"{source.label} has no backup before that time: the earliest is {first}",
                fields={"earliest": first},
            )
        return before[-1]
    return found[-1]


def _entry(path: Path, meta: dict[str, Any]) -> BackupEntry:
    return BackupEntry(
        id=path.name, kind="rdb", started_at=float(meta["started_at"]),
        finished_at=float(meta["finished_at"]), size_bytes=int(meta["rdb_bytes"]),
        stored_bytes=path.stat().st_size if path.exists() else None,
        locations=tuple(meta.get("locations", ["local"])),
    )  # fmt: skip


def _meta_path(sealed: Path) -> Path:
    return sealed.with_name(sealed.name + ".json")


def _pending(ds: Datastore) -> Path:
    """Marks a restored dataset that has not got its AOF yet (see configure)."""
    return Path(ds.dir) / "restore-pending.json"


def _backup_key(secrets: Mapping[str, str]) -> bytes:
    return bytes.fromhex(secrets["backup_key"])


def secrets_token() -> str:
    return secrets.token_hex(3)


def data_dir(ds: Datastore) -> Path:
    return Path(ds.dir) / "data"
