"""Backups, restores and the recovery point of a ~1 GB managed PostgreSQL database.

A fresh Shipyard (tests/support/harness.py) deploys a Blueprint with ``databases: [{name:
bench}]`` (PostgreSQL 15, WAL archived by pgBackRest from the first start, zstd-compressed and
aes-256-cbc-encrypted, ``archive_timeout`` 60 s). Then, all through the CLI (``shipyard db
...``, ``shipyard psql``) except pgbench, which runs as the database's owner over TCP with the
password ``datastore_client`` hands out:

- initialize: ``pgbench -i -s SCALE`` (default 70, ~1 GB), timed, with pgbench's own phases;
  then the time the WAL archive needs to catch up with it (``pg_stat_archiver``);
- a full backup: ``shipyard db backup bench --full --wait``; the database's size, the backup's
  size as stored in the repository (compressed, encrypted) and their ratio;
- two marked writes (rows "mark 1", "mark 2" about 2 s apart); the time until the WAL segment
  holding mark 2 is archived (a quiet database: bounded by archive_timeout);
- ``db restore --latest --as bench-latest --wait``: both marks and every pgbench row must be
  there; ``db restore --to-time T --as bench-then --wait`` with T between the marks: mark 1
  must be there, mark 2 not. Each restore is reported as the daemon's ``restored in X s``
  (restore of the files, WAL replay, start: the new database is usable) and as the whole
  command, which also takes the new database's first full backup (its own run is reported).
  Each restored database is deleted after its checks (its backups are kept);
- the recovery point under continuous writes: ``pgbench -c 2 -T ...`` (TPC-B-like) runs for
  ``--warmup`` seconds, then ``shipyard db drill bench --wait`` while it keeps writing; the
  drill's ``recovery_point_seconds`` and ``restore_seconds`` (target: recovery point <= 60 s).
  Alongside, the benchmark samples ``pg_current_wal_lsn()`` and ``pg_stat_archiver`` every
  0.5 s and computes, at each sample, for how many seconds the writes not yet archived go
  back (what a disaster at that moment would lose, from WAL positions, not from the 10 s
  heartbeat the drill reads).

    nice -n 10 .venv/bin/python bench/backup_restore.py [--scale 70] [--warmup 30]
        [--clients 2] [--timeout 900] [--keep-home]

``--scale 5`` (~86 MB) is a quick smoke run. The Shipyard home lives on disk under /tmp,
removed at the end unless ``--keep-home``. Prints JSON, then a one-line summary.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.harness import Shipyard, keep, leftovers, shut_down, wait_for

MB = 1_000_000
DB = "bench"
BLUEPRINT = f"databases:\n  - name: {DB}\n"
ROWS_PER_SCALE = 100_000  # pgbench_accounts rows per scale unit
RPO_TARGET_S = 60.0


def log(msg: str, started: float | None = None) -> None:
    stamp = f"[{time.monotonic() - started:7.1f}s] " if started is not None else ""
    print(f"backup_restore: {stamp}{msg}", file=sys.stderr, flush=True)


def iso(ts: float) -> str:
    """ISO 8601 UTC with milliseconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


# -- talking to the database -------------------------------------------------------------------


@dataclass(frozen=True)
class Owner:
    """How to reach the database as its owner over TCP (the password from datastore_client)."""

    port: int
    user: str
    database: str
    password: str
    bindir: Path

    def env(self) -> dict[str, str]:
        return {**os.environ, "PGPASSWORD": self.password}

    def pgbench(self, *args: str) -> list[str]:
        return [str(self.bindir / "pgbench"), "-h", "127.0.0.1", "-p", str(self.port),
                "-U", self.user, *args, self.database]  # fmt: skip

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user=self.user, dbname=self.database,
            password=self.password, autocommit=True, connect_timeout=10,
        )  # fmt: skip


def owner(sy: Shipyard) -> Owner:
    described = info(sy, DB)
    with sy.client() as c:
        command = c.datastore_client(DB, [])
    psql = Path(command.argv[0])
    bindir = psql.parent if psql.is_absolute() else Path(shutil.which("psql") or psql).parent
    return Owner(int(described["port"]), str(described["user"]), str(described["database"]),
                 command.env["PGPASSWORD"], bindir)  # fmt: skip


def sql(sy: Shipyard, name: str, query: str) -> str:
    return sy.ok("psql", name, "--", "-AtXqc", query).out.strip()


def marks(sy: Shipyard, name: str) -> str:
    return sql(sy, name, "SELECT string_agg(note, ',' ORDER BY n) FROM bench_marks")


def info(sy: Shipyard, name: str) -> dict[str, Any]:
    return dict(json.loads(sy.ok("db", "info", name, "--json").out))


def backups(sy: Shipyard, name: str) -> dict[str, Any]:
    return dict(json.loads(sy.ok("db", "backups", name, "--json").out))


def du(path: Path) -> int:
    if not path.exists():
        return 0
    out = subprocess.run(["du", "-s", "--block-size=1", str(path)], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    return int(out.split("\t", 1)[0])


# -- WAL positions and the archive ---------------------------------------------------------------


def lsn_value(text: str) -> int:
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def segment_end(name: str | None, seg_size: int) -> int | None:
    """The WAL position just past segment ``name`` (TTTTTTTTXXXXXXXXYYYYYYYY); None for
    anything else pg_stat_archiver may name (a .history or .backup file)."""
    if not name or not re.fullmatch(r"[0-9A-F]{24}", name):
        return None
    log_no, seg_no = int(name[8:16], 16), int(name[16:24], 16)
    return (log_no << 32) + (seg_no + 1) * seg_size


def segment_of(lsn: int, seg_size: int, timeline: int = 1) -> str:
    return f"{timeline:08X}{lsn >> 32:08X}{(lsn & 0xFFFFFFFF) // seg_size:08X}"


@dataclass(frozen=True)
class Sample:
    t: float  # time.time()
    lsn: int  # pg_current_wal_lsn()
    archived_end: int  # the position just past the newest archived segment seen so far


def unarchived_seconds(samples: list[Sample]) -> list[tuple[float, float | None]]:
    """Per sample: for how many seconds the WAL not yet archived goes back (the time since the
    write position passed the end of the newest archived segment, interpolated between
    samples); 0 when everything written is archived; None when that happened before the
    first sample."""
    times = [s.t for s in samples]
    positions = [s.lsn for s in samples]
    out: list[tuple[float, float | None]] = []
    for i, s in enumerate(samples):
        if s.lsn <= s.archived_end:
            out.append((s.t, 0.0))
            continue
        j = bisect.bisect_right(positions, s.archived_end, 0, i + 1)  # first lsn past it
        if j == 0:
            out.append((s.t, None))
            continue
        t0, t1, p0, p1 = times[j - 1], times[j], positions[j - 1], positions[j]
        crossed = t0 + (t1 - t0) * (s.archived_end - p0) / (p1 - p0) if p1 > p0 else t1
        out.append((s.t, s.t - crossed))
    return out


class WalSampler:
    """A thread sampling the write position and the archiver every ``interval_s``."""

    def __init__(self, db: Owner, interval_s: float = 0.5) -> None:
        self.db, self.interval_s = db, interval_s
        self.samples: list[Sample] = []
        self.error = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wal-sampler", daemon=True)
        self.seg_size = segment_size(db)

    def __enter__(self) -> WalSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        archived = 0
        try:
            with self.db.connect() as conn:
                while not self._stop.is_set():
                    row = conn.execute(
                        "SELECT pg_current_wal_lsn()::text, last_archived_wal FROM pg_stat_archiver"
                    ).fetchone()
                    if row:
                        end = segment_end(row[1], self.seg_size)
                        archived = max(archived, end or 0)
                        self.samples.append(Sample(time.time(), lsn_value(row[0]), archived))
                    self._stop.wait(self.interval_s)
        except psycopg.Error as exc:
            self.error = str(exc).strip().splitlines()[0]

    def window(self, since: float, until: float) -> dict[str, Any]:
        lags = [(t, lag) for t, lag in unarchived_seconds(self.samples) if since <= t <= until]
        known = [lag for _, lag in lags if lag is not None]
        at_start = next((lag for _, lag in lags), None)
        pos = [s for s in self.samples if since <= s.t <= until]
        wal_mb_s = (
            (pos[-1].lsn - pos[0].lsn) / (pos[-1].t - pos[0].t) / MB
            if len(pos) > 1 and pos[-1].t > pos[0].t
            else None
        )
        return {
            "samples": len(lags),
            "at_start_s": None if at_start is None else round(at_start, 1),
            "median_s": round(statistics.median(known), 1) if known else None,
            "max_s": round(max(known), 1) if known else None,
            "wal_mb_per_s": None if wal_mb_s is None else round(wal_mb_s, 2),
            "segment_fill_s": (round(self.seg_size / MB / wal_mb_s, 1) if wal_mb_s else None),
        }


def segment_size(db: Owner) -> int:
    with db.connect() as conn:
        row = conn.execute(
            "SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'"
        ).fetchone()
    return int(row[0]) if row else 16 * 1024 * 1024


def archived_through(db: Owner, lsn: int, seg_size: int) -> bool:
    """pg_stat_archiver names the segment holding ``lsn``, or a later one."""
    with db.connect() as conn:
        row = conn.execute("SELECT last_archived_wal FROM pg_stat_archiver").fetchone()
    name = row[0] if row else None
    return segment_end(name, seg_size) is not None and str(name) >= segment_of(lsn, seg_size)


def current_lsn(db: Owner) -> int:
    with db.connect() as conn:
        row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    return lsn_value(str(row[0])) if row else 0


def wait_archived(db: Owner, lsn: int, seg_size: int, timeout: float) -> float:
    """Seconds until the segment holding ``lsn`` is archived (TimeoutError after ``timeout``)."""
    t0 = time.monotonic()
    while not archived_through(db, lsn, seg_size):
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"WAL at {lsn:X} not archived within {timeout:.0f} s")
        time.sleep(0.5)
    return time.monotonic() - t0


# -- steps -------------------------------------------------------------------------------------

PGBENCH_DONE_RE = re.compile(r"done in ([\d.]+) s \(([^)]*)\)")
PROGRESS_RE = re.compile(r"progress: [\d.]+ s, ([\d.]+) tps")
RESTORED_RE = re.compile(r"restored in ([\d.]+) s")


def initialize(db: Owner, scale: int, timeout: float) -> dict[str, Any]:
    t0 = time.monotonic()
    done = subprocess.run(db.pgbench("-i", "-s", str(scale), "-q"), env=db.env(),
                          capture_output=True, text=True, timeout=timeout, check=False)  # fmt: skip
    seconds = time.monotonic() - t0
    if done.returncode != 0:
        raise RuntimeError(f"pgbench -i exited {done.returncode}: {done.stderr[-2000:]}")
    row: dict[str, Any] = {"seconds": round(seconds, 1)}
    if m := PGBENCH_DONE_RE.search(done.stderr + done.stdout):
        row["pgbench_seconds"] = float(m[1])
        phases = [part.strip().rsplit(" ", 2) for part in m[2].split(",")]
        row["phases"] = {p[0]: float(p[1]) for p in phases if len(p) == 3 and p[2] == "s"}
    return row


def backup_entry(sy: Shipyard, name: str, backup_id: str) -> dict[str, Any]:
    found = backups(sy, name)
    return next((b for b in found["backups"] if b["id"] == backup_id), {})


def restore(sy: Shipyard, args: list[str], new_name: str, timeout: float) -> dict[str, Any]:
    t0 = time.monotonic()
    out = sy.ok("db", "restore", DB, *args, "--as", new_name, "--wait", timeout=timeout)
    row: dict[str, Any] = {"command_seconds": round(time.monotonic() - t0, 1)}
    if m := RESTORED_RE.search(out.text):
        row["restore_seconds"] = float(m[1])
    runs = backups(sy, new_name)["runs"]
    first = next((r for r in runs if r["trigger"] == "created"), None)
    if first and first["finished_at"]:
        row["first_backup_seconds"] = round(first["finished_at"] - first["started_at"], 1)
        row["first_backup_status"] = first["status"]
    return row


def run(scale: int, warmup: float, clients: int, timeout: float, keep_home: bool) -> dict[str, Any]:
    result: dict[str, Any] = {"scale": scale}
    started = time.monotonic()
    writers: list[subprocess.Popen[str]] = []
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-", dir="/tmp") as tmp:
        sy = Shipyard(Path(tmp) / "home")
        bp = Path(tmp) / "shipyard.yaml"
        bp.write_text(BLUEPRINT)
        try:
            sy.up()
            t0 = time.monotonic()
            sy.ok("deploy", "-f", str(bp), "--wait", timeout=timeout)
            result["create_seconds"] = round(time.monotonic() - t0, 1)
            db = owner(sy)
            log(f"{DB} created in {result['create_seconds']} s (port {db.port})", started)

            # -- initialize ---------------------------------------------------------------
            seg, start_lsn = segment_size(db), current_lsn(db)
            result["initialize"] = initialize(db, scale, timeout)
            end_lsn = current_lsn(db)
            previous = max(0, end_lsn - seg)  # the segment before the one being written
            result["initialize"]["wal_mb"] = round((end_lsn - start_lsn) / MB, 1)
            result["initialize"]["archive_catch_up_seconds"] = round(
                wait_archived(db, previous, seg, timeout), 1
            )
            db_bytes = int(sql(sy, DB, "SELECT pg_database_size(current_database())"))
            rows = int(sql(sy, DB, "SELECT count(*) FROM pgbench_accounts"))
            result["database_mb"] = round(db_bytes / MB, 1)
            log(f"initialized: {result['initialize']}, {result['database_mb']} MB", started)

            # -- full backup --------------------------------------------------------------
            t0 = time.monotonic()
            run_ = json.loads(sy.ok("db", "backup", DB, "--full", "--wait", "--json",
                                    timeout=timeout).out)  # fmt: skip
            full_s = time.monotonic() - t0
            entry = backup_entry(sy, DB, run_["backup_ids"][0])
            repo = next((sy.home / "backups" / "postgres").iterdir())
            result["full_backup"] = {
                "command_seconds": round(full_s, 1),
                "run_seconds": round(run_["finished_at"] - run_["started_at"], 1),
                "kind": run_["kind"],
                "cluster_mb": round((entry.get("size_bytes") or 0) / MB, 1),
                "stored_mb": round((entry.get("stored_bytes") or 0) / MB, 1),
                "stored_over_database": round((entry.get("stored_bytes") or 0) / db_bytes, 3),
                "repo_backup_dir_mb": round(du(repo / "backup") / MB, 1),
                "repo_archive_dir_mb": round(du(repo / "archive") / MB, 1),
            }
            log(f"full backup: {result['full_backup']}", started)

            # -- two marked writes, then PITR between them ------------------------------------
            sql(sy, DB, "CREATE TABLE bench_marks (n int PRIMARY KEY, note text, "
                        "at timestamptz DEFAULT clock_timestamp())")  # fmt: skip
            sql(sy, DB, "INSERT INTO bench_marks VALUES (1, 'mark 1')")
            after_first = time.time()
            time.sleep(2)
            before_second = time.time()
            sql(sy, DB, "INSERT INTO bench_marks VALUES (2, 'mark 2')")
            second_written = time.time()
            between = (after_first + before_second) / 2
            wait_archived(db, current_lsn(db), seg, timeout)
            result["mark_2_archived_after_seconds"] = round(time.time() - second_written, 1)
            log(f"mark 2 archived {result['mark_2_archived_after_seconds']} s after it", started)

            latest = restore(sy, ["--latest"], f"{DB}-latest", timeout)
            latest["marks"] = marks(sy, f"{DB}-latest")
            latest["pgbench_rows_ok"] = (
                int(sql(sy, f"{DB}-latest", "SELECT count(*) FROM pgbench_accounts")) == rows
            )
            latest["ok"] = latest["marks"] == "mark 1,mark 2" and latest["pgbench_rows_ok"]
            sy.ok("db", "delete", f"{DB}-latest", "--yes")
            result["restore_latest"] = latest
            log(f"restore --latest: {latest}", started)

            then = restore(sy, ["--to-time", iso(between)], f"{DB}-then", timeout)
            then["to_time"] = iso(between)
            then["marks"] = marks(sy, f"{DB}-then")
            then["pgbench_rows_ok"] = (
                int(sql(sy, f"{DB}-then", "SELECT count(*) FROM pgbench_accounts")) == rows
            )
            then["ok"] = then["marks"] == "mark 1" and then["pgbench_rows_ok"]
            sy.ok("db", "delete", f"{DB}-then", "--yes")
            result["restore_to_time"] = then
            log(f"restore --to-time: {then}", started)

            # -- a drill under continuous writes --------------------------------------------
            progress = Path(tmp) / "pgbench-progress.log"
            with WalSampler(db) as sampler, progress.open("w") as out:
                writes_t0 = time.time()
                writer = subprocess.Popen(
                    db.pgbench("-n", "-c", str(clients), "-j", str(clients), "-P", "5",
                               "-T", str(int(warmup + timeout))),
                    env=db.env(), stdout=subprocess.DEVNULL, stderr=out, text=True,
                )  # fmt: skip
                writers.append(writer)
                time.sleep(warmup)
                if writer.poll() is not None:
                    raise RuntimeError(f"pgbench -T exited {writer.returncode} during warm-up")
                drill_t0 = time.time()
                t0 = time.monotonic()
                drilled = sy.cli("db", "drill", DB, "--wait", "--json", timeout=timeout)
                drill_s = time.monotonic() - t0
                drill_t1 = time.time()
                still_writing = writer.poll() is None
                writer.terminate()
                writer.wait(timeout=30)
            if drilled.code != 0:
                raise RuntimeError(f"db drill exited {drilled.code}: {drilled.text[-2000:]}")
            found = json.loads(drilled.out)
            tps = [float(m[1]) for m in PROGRESS_RE.finditer(progress.read_text())]
            rpo = found.get("recovery_point_seconds")
            during = sampler.window(drill_t0, drill_t1)
            unarchived_at_start = during["at_start_s"]
            result["drill_under_writes"] = {
                "ok": bool(found.get("ok")),
                "recovery_point_seconds": None if rpo is None else round(rpo, 1),
                "restore_seconds": round(float(found.get("restore_seconds") or 0), 1),
                "command_seconds": round(drill_s, 1),
                "target_seconds": RPO_TARGET_S,
                "target_met": rpo is not None and rpo <= RPO_TARGET_S,
                "writes_running_until_drill_end": still_writing,
                "pgbench_clients": clients,
                "pgbench_tps_median": round(statistics.median(tps), 1) if tps else None,
                "warmup_seconds": warmup,
                "writes_seconds_before_drill": round(drill_t0 - writes_t0, 1),
                "unarchived_during_drill": during,
                # the drill restores "latest": WAL archived while it runs is replayed too, so
                # its data may reach past what the archive held when it began (a recovery
                # point below the unarchived lag at its start, by more than a sample period;
                # 0.0 is a heartbeat written after the drill began, clamped)
                "drill_reached_past_archive_at_its_start": (
                    rpo is not None
                    and unarchived_at_start is not None
                    and rpo < unarchived_at_start - 0.5
                ),
                "unarchived_during_warmup": sampler.window(writes_t0 + 10, drill_t0),
                "sampler_error": sampler.error,
            }
            log(f"drill under writes: {result['drill_under_writes']}", started)
            result["repo_total_mb"] = round(du(sy.home / "backups" / "postgres") / MB, 1)
            checks = {"restore --latest": latest["ok"], "restore --to-time": then["ok"],
                      "drill": result["drill_under_writes"]["ok"]}  # fmt: skip
            if not all(checks.values()):
                result["error"] = "failed: " + ", ".join(k for k, ok in checks.items() if not ok)
        except Exception as exc:
            result.setdefault("error", f"{type(exc).__name__}: {exc}")
            log(f"failed: {type(exc).__name__}: {exc}")
        finally:
            for writer in writers:  # ours, by pid
                if writer.poll() is None:
                    writer.kill()
                    writer.wait(timeout=30)
            log("shipyard down", started)

            def settle() -> None:  # log writers exit once their server's output closes
                t0 = time.monotonic()
                with contextlib.suppress(AssertionError):
                    wait_for(lambda: not leftovers(tmp), timeout=15)
                result["settle_seconds"] = round(time.monotonic() - t0, 1)

            shut_down(sy, tmp, result, timeout_s=300, settle=settle)
            if keep_home:
                result["kept_home"] = str(keep(sy.home))
    result["total_seconds"] = round(time.monotonic() - started, 1)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--scale", type=int, default=70, help="pgbench scale (70: ~1 GB)")
    parser.add_argument(
        "--warmup", type=float, default=30, help="seconds of writes before the drill starts"
    )
    parser.add_argument("--clients", type=int, default=2, help="pgbench clients during the drill")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per step")
    parser.add_argument(
        "--keep-home", action="store_true", help="keep the Shipyard home (moved under /tmp)"
    )
    args = parser.parse_args()
    if args.scale < 1 or args.clients < 1:
        parser.error("--scale and --clients must be at least 1")
    result = run(args.scale, args.warmup, args.clients, args.timeout, args.keep_home)
    report = {"benchmark": "backup_restore", "cpus": psutil.cpu_count(), **result}
    print(json.dumps(report, indent=2))
    if "error" in result or result.get("processes_left_after_down"):
        print(f"backup_restore: FAILED: {result.get('error') or 'processes left after down'}")
        return 1
    b, latest, then = result["full_backup"], result["restore_latest"], result["restore_to_time"]
    d = result["drill_under_writes"]
    print(
        f"backup_restore: {result['database_mb']} MB database (scale {result['scale']}): "
        f"init {result['initialize']['seconds']} s, full backup {b['command_seconds']} s "
        f"({b['stored_mb']} MB stored, {b['stored_over_database']} of the database), "
        f"restore --latest {latest.get('restore_seconds')} s "
        f"({latest['command_seconds']} s with its first backup), "
        f"PITR {then.get('restore_seconds')} s; drill under writes: recovery point "
        f"{d['recovery_point_seconds']} s (target <= {RPO_TARGET_S:g} s), restore "
        f"{d['restore_seconds']} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
