"""Running pgBackRest 2.45 for one stanza, and reading what it says.

:class:`PgBackRest` runs ``pgbackrest --config=<file> --stanza=<name> <command>``:

* as the account ``run_as`` (PostgreSQL and pgBackRest refuse root; None: our own account),
  in ``/``, with stdin from /dev/null, output captured, and a clean environment: PATH,
  ``LANG=C.UTF-8`` and the caller's ``env`` (the secrets of
  :func:`~shipyard.drivers.pgbackrest.config.secret_env`), nothing inherited from Shipyard;
* with a timeout, after which its whole process group (pgBackRest's local workers too) gets
  SIGTERM, then SIGKILL;
* a non-zero exit raises :class:`~shipyard.errors.RuntimeFailure` whose message is
  pgBackRest's own error (``ERROR: [075]: unable to find backup set ...``), with
  ``fields["error_code"]`` its number. Secrets never appear in a message: pgBackRest redacts
  its options, and every secret value of ``env`` is scrubbed from what we quote.

Reading: :meth:`PgBackRest.info` parses ``info --output=json`` (the machine-readable, stable
format) into :class:`StanzaInfo`; :meth:`PgBackRest.verify` parses ``verify --output=text
--verbose`` (2.45 has no JSON for verify; it exits 0 even when it finds corrupt or missing
files, so the parsed status is the result, never the exit code).

Restoring (:meth:`PgBackRest.restore`) always writes a NEW, empty data directory
(``--pg1-path``) with archiving off in it (``--archive-mode=off``): a restored copy must not
push WAL into the repository of the cluster it came from. The target is checked against
:meth:`PgBackRest.info` before anything is written: a time before the earliest restorable
moment (the end of the oldest backup), a time in the future or an unknown backup label fails
with a message saying what can be restored.

Archiving failures are seen by the caller in three places: :meth:`PgBackRest.check` raises
(the repository is unreachable or a WAL segment did not arrive in time); PostgreSQL's
``pg_stat_archiver`` (``failed_count``, ``last_failed_wal``, ``last_failed_time``) counts
failed pushes; and once more than ``archive-push-queue-max`` of WAL waits, pgBackRest drops it
(PostgreSQL counts it as archived) and writes ``WARN: dropped WAL file ...`` to the PostgreSQL
server log: :func:`dropped_wal` finds those lines. After a drop, point-in-time recovery past
the gap is impossible until the next full or differential backup.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from shipyard.drivers.local.users import account, give, popen_kwargs
from shipyard.drivers.pgbackrest.config import SECRET_ENV_NAMES
from shipyard.errors import RuntimeFailure

BackupKind = Literal["full", "diff", "incr"]
CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_TIMEOUT_S = 6 * 3600.0  # a backup of a big database takes hours; callers pass less
SHORT_TIMEOUT_S = 300.0  # info, check, expire, stanza-create
_KILL_GRACE_S = 10.0
_MIN_SCRUB_LEN = 4  # shorter "secrets" would shred every message they occur in by chance
_ERROR_LINE = re.compile(r"^(?:P\d+\s+)?ERROR: \[(\d{3})\]: ?(.*)$")
_WARN_LINE = re.compile(r"^(?:P\d+\s+)?WARN: (.*)$")
_RESTORED_SET = re.compile(r"repo(\d+): restore backup set (\S+?),")
_DROPPED = re.compile(r"dropped WAL file '([0-9A-F]{24})' because archive queue exceeded (\S+)")
_LABEL = re.compile(r"^\d{8}-\d{6}F(?:_\d{8}-\d{6}[DI])?$")


@dataclass(frozen=True)
class BackupInfo:
    """One backup in one repository, as ``info`` reports it. Sizes are bytes: ``database_*``
    of the cluster's files, ``repo_*`` as stored (compressed, encrypted); ``*_delta`` is what
    this backup added (all of it for a full backup). ``repo_size`` is None when pgBackRest
    does not report it."""

    label: str
    kind: BackupKind
    repo: int
    start: dt.datetime
    stop: dt.datetime
    database_size: int
    database_delta: int
    repo_size: int | None
    repo_delta: int | None
    wal_start: str | None
    wal_stop: str | None
    prior: str | None
    error: bool


@dataclass(frozen=True)
class RepoStatus:
    repo: int
    code: int
    message: str
    cipher: str

    @property
    def ok(self) -> bool:
        return self.code == 0


@dataclass(frozen=True)
class ArchiveRange:
    """The WAL stored in one repository for one database (``archive_id`` like ``15-1``)."""

    repo: int
    archive_id: str
    min_wal: str | None
    max_wal: str | None


@dataclass(frozen=True)
class StanzaInfo:
    """``info`` of one stanza: overall status (0 ok; 1 missing stanza path, 2 no valid backup,
    3 missing stanza data, 4 mixed, 99 other: see ``status_message`` and ``repos``), every
    backup of every repository oldest first, and the archived WAL range of each repository."""

    name: str
    status_code: int
    status_message: str
    cipher: str
    repos: tuple[RepoStatus, ...]
    backups: tuple[BackupInfo, ...]
    archives: tuple[ArchiveRange, ...]

    @property
    def ok(self) -> bool:
        return self.status_code == 0

    def backups_in(self, repo: int | None = None) -> tuple[BackupInfo, ...]:
        """Good (not errored) backups of ``repo`` (None: all repositories), oldest first."""
        return tuple(b for b in self.backups if not b.error and repo in (None, b.repo))

    def earliest_restorable(self, repo: int | None = None) -> dt.datetime | None:
        """The earliest time a point-in-time restore can target: one second after the oldest
        backup's stop (pgBackRest picks a backup whose stop time, in whole seconds, is
        strictly before the target; before its end a backup is not consistent)."""
        stops = [b.stop for b in self.backups_in(repo)]
        return min(stops) + dt.timedelta(seconds=1) if stops else None


@dataclass(frozen=True)
class RestoreTarget:
    """What to restore: the end of the archived WAL (:meth:`latest`), the moment one backup
    became consistent (:meth:`backup`: ``--set=LABEL --type=immediate``), or a point in time
    (:meth:`at`: ``--type=time``, promoted when reached)."""

    kind: Literal["latest", "backup", "time"]
    label: str | None = None
    time: dt.datetime | None = None

    def __post_init__(self) -> None:
        if self.kind == "backup" and (self.label is None or not _LABEL.match(self.label)):
            raise ValueError(f"RestoreTarget.backup needs a backup label, got {self.label!r}")
        if self.kind == "time" and (self.time is None or self.time.tzinfo is None):
            raise ValueError("RestoreTarget.at needs a timezone-aware datetime")

    @classmethod
    def latest(cls) -> RestoreTarget:
        return cls("latest")

    @classmethod
    def backup(cls, label: str) -> RestoreTarget:
        return cls("backup", label=label)

    @classmethod
    def at(cls, time: dt.datetime) -> RestoreTarget:
        return cls("time", time=time)


@dataclass(frozen=True)
class RestoreResult:
    """Where the restore went and which backup it started from (``label`` None if pgBackRest
    did not say)."""

    target_dir: Path
    repo: int | None
    label: str | None


@dataclass(frozen=True)
class VerifyCounts:
    checked: int
    valid: int
    missing: int
    checksum_invalid: int
    size_invalid: int
    other: int

    @property
    def ok(self) -> bool:
        return self.checked == self.valid and not (
            self.missing or self.checksum_invalid or self.size_invalid or self.other
        )


@dataclass(frozen=True)
class ArchiveVerify:
    archive_id: str
    counts: VerifyCounts


@dataclass(frozen=True)
class BackupVerify:
    label: str
    status: str  # "valid", "invalid", ...
    counts: VerifyCounts


@dataclass(frozen=True)
class VerifyResult:
    """The parsed ``verify`` report of one repository. ``ok`` only when pgBackRest says
    ``status: ok`` and every backup and archive it checked is valid; ``problems`` says what
    is not, one line each; ``text`` is the report as printed."""

    stanza: str
    status: str
    archives: tuple[ArchiveVerify, ...]
    backups: tuple[BackupVerify, ...]
    text: str

    @property
    def ok(self) -> bool:
        return (
            self.status == "ok"
            and all(a.counts.ok for a in self.archives)
            and all(b.status == "valid" and b.counts.ok for b in self.backups)
        )

    @property
    def problems(self) -> list[str]:
        found = [f"stanza status: {self.status}"] if self.status != "ok" else []
        for a in self.archives:
            if not a.counts.ok:
                found.append(f"archive {a.archive_id}: {_describe_counts(a.counts)}")
        for b in self.backups:
            if b.status != "valid" or not b.counts.ok:
                found.append(f"backup {b.label} {b.status}: {_describe_counts(b.counts)}")
        return found


@dataclass(frozen=True)
class Completed:
    stdout: str
    stderr: str
    warnings: tuple[str, ...]


class PgBackRest:
    """pgBackRest for the stanza ``stanza`` configured in ``config_path`` (see config.py)."""

    def __init__(
        self,
        config_path: Path,
        stanza: str,
        run_as: str | None,
        env: Mapping[str, str],
        *,
        binary: str = "pgbackrest",
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.config_path = config_path
        self.stanza = stanza
        self.run_as = run_as
        self.binary = binary
        self.timeout_s = timeout_s
        self._env = dict(env)
        self._secrets = sorted(
            (v for k, v in env.items() if _is_secret(k) and len(v) >= _MIN_SCRUB_LEN),
            key=len,
            reverse=True,
        )

    # --- commands ---------------------------------------------------------------------------

    def stanza_create(self) -> None:
        """Create the stanza in every repository (idempotent; PostgreSQL must be running)."""
        self.run("stanza-create", timeout_s=self._short())

    def check(self, archive_timeout_s: float | None = None) -> None:
        """Check the configuration, every repository and that a WAL segment gets archived
        within ``archive_timeout_s`` (pgBackRest's default: 60 s); RuntimeFailure otherwise."""
        opts = [] if archive_timeout_s is None else [f"--archive-timeout={archive_timeout_s:g}"]
        self.run("check", *opts, timeout_s=self._short(archive_timeout_s or 60))

    def backup(
        self, kind: BackupKind, repo: int | None = None, timeout_s: float | None = None
    ) -> BackupInfo:
        """Take a ``kind`` backup into ``repo`` (None: repo1) and return it as ``info`` lists
        it (a diff/incr without a full before it becomes a full: ``kind`` says). Old backups
        are expired afterwards according to the retention (pgBackRest's ``expire-auto``)."""
        self.run("backup", f"--type={kind}", *_repo_opt(repo), timeout_s=timeout_s)
        taken = self.info(repo).backups_in(repo or 1)
        if not taken:
            raise RuntimeFailure(
                f"pgbackrest backup of stanza '{self.stanza}' succeeded but info lists no backup",
                fields={"stanza": self.stanza, "repo": repo or 1},
            )
        return max(taken, key=lambda b: (b.stop, b.label))

    def info(self, repo: int | None = None) -> StanzaInfo:
        """The stanza's backups and archive (``info --output=json``)."""
        done = self.run("info", "--output=json", *_repo_opt(repo), timeout_s=self._short())
        return parse_info(done.stdout, self.stanza)

    def expire(self, repo: int | None = None) -> None:
        """Remove backups and WAL beyond the retention."""
        self.run("expire", *_repo_opt(repo), timeout_s=self._short())

    def verify(self, repo: int | None = None, timeout_s: float | None = None) -> VerifyResult:
        """Check every file of ``repo`` (None: repo1) against its manifest checksums."""
        done = self.run(
            "verify", "--output=text", "--verbose", *_repo_opt(repo), timeout_s=timeout_s
        )
        return parse_verify(done.stdout)

    def restore(
        self,
        target_dir: Path,
        target: RestoreTarget,
        repo: int | None = None,
        timeout_s: float | None = None,
    ) -> RestoreResult:
        """Restore into ``target_dir``, which must not exist yet or be an empty directory
        (its parent must exist). The new data directory belongs to ``run_as`` (mode 0700) and
        has ``archive_mode=off``; start it with the same secret environment (its
        ``restore_command`` runs ``pgbackrest archive-get``), then wait for
        ``pg_is_in_recovery()`` to be false. Nothing is written if the target cannot be
        restored; a failed restore removes what it wrote."""
        self._check_target(target, repo)
        created = _prepare_empty_dir(target_dir)
        give(target_dir, account(self.run_as), 0o700)
        opts = [f"--pg1-path={target_dir}", "--archive-mode=off", *_repo_opt(repo)]
        if target.kind == "backup":
            opts += [f"--set={target.label}", "--type=immediate", "--target-action=promote"]
        elif target.kind == "time":
            assert target.time is not None
            opts += ["--type=time", f"--target={_pg_time(target.time)}", "--target-action=promote"]
        try:
            done = self.run("restore", *opts, "--log-level-console=info", timeout_s=timeout_s)
        except BaseException:
            _empty_out(target_dir, remove=created)
            raise
        found = _RESTORED_SET.search(done.stdout)
        return RestoreResult(
            target_dir=target_dir,
            repo=int(found.group(1)) if found else repo,
            label=found.group(2) if found else None,
        )

    # --- running ----------------------------------------------------------------------------

    def run(self, command: str, *options: str, timeout_s: float | None = None) -> Completed:
        """Run one pgBackRest command; RuntimeFailure with its error if it exits non-zero or
        does not finish within ``timeout_s`` (default: the instance's)."""
        argv = [
            self.binary, f"--config={self.config_path}", f"--stanza={self.stanza}",
            *options, command,
        ]  # fmt: skip
        limit = timeout_s if timeout_s is not None else self.timeout_s
        env = {"PATH": CLEAN_PATH, "LANG": "C.UTF-8", **self._env}
        fields: dict[str, Any] = {"stanza": self.stanza, "command": command}
        try:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                cwd="/", env=env, start_new_session=True, **popen_kwargs(self.run_as),
            )  # fmt: skip
        except OSError as exc:
            raise RuntimeFailure(
                f"cannot run pgbackrest {command} ({self.binary}): {exc}", fields=fields
            ) from exc
        try:
            out, err = proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            out, err = _kill_group(proc)
            raise RuntimeFailure(
                f"pgbackrest {command} of stanza '{self.stanza}' did not finish within "
                f"{limit:g} s and was stopped; {self._quote(err, out) or 'no output'}",
                fields={**fields, "timeout_s": limit},
            ) from None
        stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
        if proc.returncode != 0:
            code, message = self._error(stderr, stdout)
            raise RuntimeFailure(
                f"pgbackrest {command} of stanza '{self.stanza}' failed "
                f"(exit {proc.returncode}): {message}",
                fields={**fields, "exit_code": proc.returncode, "error_code": code},
            )
        warnings = tuple(self._scrub(w) for w in _warnings(stderr + "\n" + stdout))
        return Completed(stdout=stdout, stderr=stderr, warnings=warnings)

    def _short(self, extra_s: float = 0.0) -> float:
        """The timeout of a quick command (info, check, expire, stanza-create)."""
        return min(self.timeout_s, SHORT_TIMEOUT_S + extra_s)

    def _check_target(self, target: RestoreTarget, repo: int | None) -> None:
        info = self.info(repo)
        backups = info.backups_in(repo)
        where = f"repo{repo}" if repo is not None else "any repository"
        fields: dict[str, Any] = {"stanza": self.stanza, "repo": repo}
        if not backups:
            raise RuntimeFailure(
                f"no backup of stanza '{self.stanza}' in {where} to restore "
                f"(info: {info.status_message})",
                fields=fields,
            )
        if target.kind == "backup" and target.label not in {b.label for b in backups}:
            labels = ", ".join(b.label for b in backups)
            raise RuntimeFailure(
                f"no backup '{target.label}' of stanza '{self.stanza}' in {where}; "
                f"backups: {labels}",
                fields={**fields, "label": target.label},
            )
        if target.kind == "time":
            assert target.time is not None
            earliest = info.earliest_restorable(repo)
            assert earliest is not None
            if target.time < earliest:
                raise RuntimeFailure(
                    f"cannot restore stanza '{self.stanza}' to {_pg_time(target.time)}: the "
                    f"earliest time that can be restored from {where} is {_pg_time(earliest)} "
                    f"(one second after the oldest backup, {backups[0].label}, ended)",
                    fields={**fields, "earliest": earliest.isoformat()},
                )
            now = dt.datetime.now(dt.UTC)
            if target.time > now:
                raise RuntimeFailure(
                    f"cannot restore stanza '{self.stanza}' to {_pg_time(target.time)}: "
                    f"that is in the future (now {_pg_time(now)})",
                    fields=fields,
                )

    def _error(self, stderr: str, stdout: str) -> tuple[int | None, str]:
        """pgBackRest's first ERROR (with its continuation lines), scrubbed; else the tail."""
        for text in (stderr, stdout):
            lines = text.splitlines()
            for i, line in enumerate(lines):
                match = _ERROR_LINE.match(line.strip())
                if match is None:
                    continue
                block = [line.strip()]
                for more in lines[i + 1 :]:  # continuation lines are indented
                    if not more[:1].isspace():
                        break
                    block.append(more.strip())
                return int(match.group(1)), self._scrub(" ".join(b for b in block if b))
        return None, self._quote(stderr, stdout) or "no output"

    def _quote(self, *texts: bytes | str) -> str:
        joined = "\n".join(
            t.decode(errors="replace") if isinstance(t, bytes) else t for t in texts
        ).strip()
        return self._scrub(" | ".join(joined.splitlines()[-5:]))

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "<redacted>")
        return text


# --- parsing (pure) ---------------------------------------------------------------------------


def parse_info(text: str, stanza: str) -> StanzaInfo:
    """``info --output=json`` of ``stanza``; RuntimeFailure if it is not there or malformed.
    (2.45 puts raw line breaks of multi-line error messages into JSON strings: parsed with
    ``strict=False``.)"""
    try:
        data = json.loads(text, strict=False)
        entry = next(s for s in data if s.get("name") == stanza)
        return _stanza_info(entry)
    except (ValueError, StopIteration, KeyError, TypeError, AttributeError) as exc:
        raise RuntimeFailure(
            f"unexpected pgbackrest info output for stanza '{stanza}': {exc!r}",
            fields={"stanza": stanza},
        ) from exc


def _stanza_info(entry: dict[str, Any]) -> StanzaInfo:
    repos = tuple(
        RepoStatus(
            repo=int(r["key"]),
            code=int(r["status"]["code"]),
            message=str(r["status"]["message"]),
            cipher=str(r.get("cipher", "")),
        )
        for r in entry.get("repo", [])
    )
    archives = tuple(
        ArchiveRange(
            repo=int(a["database"]["repo-key"]),
            archive_id=str(a["id"]),
            min_wal=a.get("min"),
            max_wal=a.get("max"),
        )
        for a in entry.get("archive", [])
    )
    backups = sorted(
        (_backup_info(b) for b in entry.get("backup", [])), key=lambda b: (b.stop, b.label)
    )
    return StanzaInfo(
        name=str(entry["name"]),
        status_code=int(entry["status"]["code"]),
        status_message=str(entry["status"]["message"]),
        cipher=str(entry.get("cipher", "")),
        repos=repos,
        backups=tuple(backups),
        archives=archives,
    )


def _backup_info(b: dict[str, Any]) -> BackupInfo:
    info = b.get("info", {})
    repository = info.get("repository", {})
    archive = b.get("archive") or {}
    kind = str(b["type"])
    if kind not in ("full", "diff", "incr"):
        raise ValueError(f"unknown backup type {kind!r}")
    return BackupInfo(
        label=str(b["label"]),
        kind=cast(BackupKind, kind),
        repo=int(b["database"]["repo-key"]),
        start=_utc(b["timestamp"]["start"]),
        stop=_utc(b["timestamp"]["stop"]),
        database_size=int(info.get("size", 0)),
        database_delta=int(info.get("delta", 0)),
        repo_size=_opt_int(repository.get("size")),
        repo_delta=_opt_int(repository.get("delta")),
        wal_start=archive.get("start"),
        wal_stop=archive.get("stop"),
        prior=b.get("prior"),
        error=bool(b.get("error", False)),
    )


def parse_verify(text: str) -> VerifyResult:
    """``verify --output=text --verbose``: a ``stanza:``/``status:`` header, then per archive
    ``archiveId: 15-1, total WAL checked: N, total valid WAL: N`` and per backup ``backup:
    LABEL, status: valid, total files checked: N, total valid files: N``, each followed by an
    indented ``missing: 0, checksum invalid: 0, size invalid: 0, other: 0`` line."""
    stanza = status = ""
    archives: list[ArchiveVerify] = []
    backups: list[BackupVerify] = []
    pending: tuple[str, dict[str, str]] | None = None

    def flush(extra: dict[str, str]) -> None:
        nonlocal pending
        if pending is None:
            return
        kind, head = pending
        counts = _counts({**head, **extra})
        if kind == "archive":
            archives.append(ArchiveVerify(head["archiveid"], counts))
        else:
            backups.append(BackupVerify(head["backup"], head.get("status", "?"), counts))
        pending = None

    for line in text.splitlines():
        pairs = _pairs(line)
        if not pairs:
            continue
        if "stanza" in pairs and len(pairs) == 1:
            stanza = pairs["stanza"]
        elif "status" in pairs and len(pairs) == 1 and not line[:1].isspace():
            status = pairs["status"]
        elif "archiveid" in pairs or "backup" in pairs:
            flush({})
            pending = ("archive" if "archiveid" in pairs else "backup", pairs)
        elif pending is not None:
            flush(pairs)
    flush({})
    if not status:
        raise RuntimeFailure(
            f"unexpected pgbackrest verify output: {text.strip()[:300]!r}", fields={}
        )
    return VerifyResult(
        stanza=stanza,
        status=status,
        archives=tuple(archives),
        backups=tuple(backups),
        text=text,
    )


def dropped_wal(log_text: str) -> list[str]:
    """The WAL segments pgBackRest dropped because ``archive-push-queue-max`` was exceeded,
    found in PostgreSQL server log text (archive-push writes its warnings to the server's
    stderr, i.e. its log)."""
    return [m.group(1) for m in _DROPPED.finditer(log_text)]


def _pairs(line: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in line.strip().split(", "):
        key, sep, value = part.partition(": ")
        if sep:
            out[key.strip().lower().replace(" ", "")] = value.strip()
    return out


def _counts(pairs: dict[str, str]) -> VerifyCounts:
    def num(*keys: str) -> int:
        for key in keys:
            if key in pairs and pairs[key].isdigit():
                return int(pairs[key])
        return 0

    return VerifyCounts(
        checked=num("totalwalchecked", "totalfileschecked"),
        valid=num("totalvalidwal", "totalvalidfiles"),
        missing=num("missing"),
        checksum_invalid=num("checksuminvalid"),
        size_invalid=num("sizeinvalid"),
        other=num("other"),
    )


def _describe_counts(c: VerifyCounts) -> str:
    return (
        f"{c.valid}/{c.checked} valid, missing {c.missing}, checksum invalid "
        f"{c.checksum_invalid}, size invalid {c.size_invalid}, other {c.other}"
    )


def _warnings(text: str) -> list[str]:
    return [m.group(1) for ln in text.splitlines() if (m := _WARN_LINE.match(ln.strip()))]


def _is_secret(name: str) -> bool:
    return name in SECRET_ENV_NAMES or any(w in name for w in ("PASS", "SECRET", "KEY", "TOKEN"))


def _repo_opt(repo: int | None) -> Sequence[str]:
    if repo is None:
        return ()
    if not 1 <= repo <= 256:
        raise ValueError(f"repository number out of range: {repo}")
    return (f"--repo={repo}",)


def _utc(epoch: Any) -> dt.datetime:
    return dt.datetime.fromtimestamp(int(epoch), dt.UTC)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _pg_time(when: dt.datetime) -> str:
    """A time as PostgreSQL's recovery_target_time and pgBackRest's --target both read it."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")


def _prepare_empty_dir(path: Path) -> bool:
    """Make sure ``path`` is a new or empty directory; True if we created it."""
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise RuntimeFailure(
            f"restore target {path} exists and is not a directory", fields={"path": str(path)}
        )
    if path.exists():
        if any(path.iterdir()):
            raise RuntimeFailure(
                f"restore target {path} is not empty: restore only into a new directory",
                fields={"path": str(path)},
            )
        return False
    try:
        path.mkdir()
    except OSError as exc:
        raise RuntimeFailure(
            f"cannot create restore target {path}: {exc}", fields={"path": str(path)}
        ) from exc
    return True


def _empty_out(path: Path, remove: bool) -> None:
    if remove:
        shutil.rmtree(path, ignore_errors=True)
        return
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                child.unlink()


def _kill_group(proc: subprocess.Popen[bytes]) -> tuple[bytes, bytes]:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        return proc.communicate(timeout=_KILL_GRACE_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        return proc.communicate()
