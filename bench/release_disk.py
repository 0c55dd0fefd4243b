"""Disk used by N releases of a Next.js app, now that releases share unchanged files.

A small Next.js 15 app shaped like Render's example ``render-examples/nextjs-hello-world``
(package.json with ``next ^15.0.3``, ``react``/``react-dom ^18.3.1`` and the scripts
dev/build/start/lint; pages ``src/pages/_app.js``, ``_document.js``, ``index.js``,
``about.js``; one ``type: web``, ``runtime: node`` service with NODE_ENV=production) is
generated into a temporary git repository (its files are written here, not copied from that
repository) and deployed N times (default 10) through a real Shipyard
(tests/support/harness.py) with ``shipyard deploy -f render.yaml --wait``. Before each deploy
after the first, one line of ``src/pages/index.js`` changes and is committed, like a real commit,
so every deploy builds a new release. Render's example builds with ``yarn; yarn build`` and
starts with ``yarn start``; yarn is not installed here, so the Blueprint uses
``npm install && npm run build`` and ``npm start`` (the npm registry must be reachable).

After each deploy the new revision must answer through the edge. Then, over
SHIPYARD_HOME/services/<name>/releases/:

- real disk used by all releases together: ``du -s --block-size=1`` of the releases directory
  (hard-linked files counted once);
- what N full copies cost: ``du -s -l --block-size=1`` (every link counted, i.e. each release
  as if it held its own copy of every file), and one release's full size (blocks and apparent);
- the disk each release added (``du`` of all release directories in one call counts a shared
  inode only for the first release holding it), split into node_modules, .next and the rest;
- build time of each release (release created -> built: source copy, npm install, next build,
  sharing with the previous release) and the whole ``deploy --wait``.

    nice -n 10 .venv/bin/python bench/release_disk.py [--releases 10] [--keep-home]

The Shipyard home lives on disk under /tmp (not tmpfs), removed at the end unless
``--keep-home``. Prints JSON, then a one-line summary.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import stat
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.harness import Shipyard, keep, shut_down

MB = 1_000_000
SERVICE = "nextjs-hello"

# -- the app (written here; shaped like Render's example, not copied from it) ---------------

PACKAGE_JSON = {
    "name": "nextjs-hello-world",
    "version": "0.1.0",
    "private": True,
    "scripts": {
        "dev": "next dev",
        "build": "next build",
        "start": "next start",
        "lint": "next lint",
    },
    "dependencies": {"next": "^15.0.3", "react": "^18.3.1", "react-dom": "^18.3.1"},
}

NEXT_CONFIG = """\
/** @type {import('next').NextConfig} */
const nextConfig = { reactStrictMode: true };

export default nextConfig;
"""

APP_JS = """\
export default function App({ Component, pageProps }) {
  return <Component {...pageProps} />;
}
"""

DOCUMENT_JS = """\
import { Html, Head, Main, NextScript } from "next/document";

export default function Document() {
  return (
    <Html lang="en">
      <Head />
      <body>
        <Main />
        <NextScript />
      </body>
    </Html>
  );
}
"""

INDEX_JS = """\
import Link from "next/link";

const REVISION = "{revision}";

export default function Home() {{
  return (
    <main style={{{{ fontFamily: "sans-serif", padding: "2rem" }}}}>
      <h1>Hello from Next.js on Shipyard</h1>
      <p>revision {{REVISION}}</p>
      <Link href="/about">About</Link>
    </main>
  );
}}
"""

ABOUT_JS = """\
import Link from "next/link";

export default function About() {
  return (
    <main style={{ fontFamily: "sans-serif", padding: "2rem" }}>
      <h1>About</h1>
      <p>A small Next.js app deployed from a Blueprint.</p>
      <Link href="/">Home</Link>
    </main>
  );
}
"""

GITIGNORE = "node_modules/\n.next/\n"

BLUEPRINT = f"""\
services:
  - type: web
    name: {SERVICE}
    runtime: node
    buildCommand: npm install && npm run build
    startCommand: npm start
    envVars:
      - key: NODE_ENV
        value: production
"""


def revision(n: int) -> str:
    return f"r{n:03d}"


def write_app(repo: Path, n: int) -> None:
    files = {
        "package.json": json.dumps(PACKAGE_JSON, indent=2) + "\n",
        "next.config.mjs": NEXT_CONFIG,
        ".gitignore": GITIGNORE,
        "render.yaml": BLUEPRINT,
        "src/pages/_app.js": APP_JS,
        "src/pages/_document.js": DOCUMENT_JS,
        "src/pages/index.js": INDEX_JS.format(revision=revision(n)),
        "src/pages/about.js": ABOUT_JS,
    }
    for rel, text in files.items():
        path = repo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        [
            "git",
            "-C",
            str(repo),
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@localhost",
            *args,
        ],
        check=True,
        capture_output=True,
        text=True,
    )


def commit(repo: Path, n: int) -> None:
    write_app(repo, n)
    if n == 1:
        git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", f"revision {revision(n)}")


# -- measuring --------------------------------------------------------------------------------


def du(*paths: Path, flags: tuple[str, ...] = ()) -> list[int]:
    """``du -s --block-size=1 [flags] paths...`` (one call: a hard-linked inode is counted once,
    for the first path holding it, unless ``-l``): bytes per path, in order."""
    out = subprocess.run(
        ["du", "-s", "--block-size=1", *flags, *map(str, paths)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [int(line.split("\t", 1)[0]) for line in out.splitlines()]


def walk(root: Path) -> Iterator[tuple[Path, os.stat_result]]:
    """Every entry under ``root`` (itself included), never following symlinks."""
    yield root, root.lstat()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            path = Path(dirpath) / name
            with contextlib.suppress(FileNotFoundError):
                yield path, path.lstat()


def category(release_dir: Path, path: Path, st: os.stat_result) -> str:
    """Where the blocks of an entry go: directories (never shared: each release has its own
    tree of them), else node_modules, .next/cache, the rest of .next, or other."""
    if stat.S_ISDIR(st.st_mode):
        return "directories"
    parts = path.relative_to(release_dir).parts
    if len(parts) >= 2 and parts[0] == "app" and parts[1] in ("node_modules", ".next"):
        if parts[1] == ".next" and len(parts) >= 3 and parts[2] == "cache":
            return ".next/cache"
        return parts[1]
    return "other"


def release_usage(release_dirs: list[Path]) -> list[dict[str, Any]]:
    """Per release, in order: files, how many of them share an inode with an earlier release,
    the disk it adds (blocks of inodes no earlier release holds) per category, and its full
    size (every file counted, as a copy would hold it)."""
    seen: set[tuple[int, int]] = set()
    rows = []
    for rdir in release_dirs:
        added: dict[str, int] = {}
        full: dict[str, int] = {}
        files = shared = apparent = 0
        mine: set[tuple[int, int]] = set()
        for path, st in walk(rdir):
            key, blocks = (st.st_dev, st.st_ino), st.st_blocks * 512
            cat = category(rdir, path, st)
            full[cat] = full.get(cat, 0) + blocks
            apparent += st.st_size
            if stat.S_ISREG(st.st_mode):
                files += 1
                shared += key in seen
            if key not in seen and key not in mine:
                added[cat] = added.get(cat, 0) + blocks
                mine.add(key)
        seen |= mine
        rows.append(
            {
                "release": int(rdir.name),
                "files": files,
                "files_shared_with_earlier": shared,
                "added_mb": round(sum(added.values()) / MB, 1),
                "added_mb_by_part": {k: round(v / MB, 1) for k, v in sorted(added.items())},
                "full_copy_mb": round(sum(full.values()) / MB, 1),
                "full_copy_mb_by_part": {k: round(v / MB, 1) for k, v in sorted(full.items())},
                "apparent_mb": round(apparent / MB, 1),
            }
        )
    return rows


# -- running ----------------------------------------------------------------------------------


def log(msg: str, started: float | None = None) -> None:
    stamp = f"[{time.monotonic() - started:7.1f}s] " if started is not None else ""
    print(f"release_disk: {stamp}{msg}", file=sys.stderr, flush=True)


def releases(sy: Shipyard) -> list[dict[str, Any]]:
    with sy.client() as c:
        return [r.model_dump(mode="json") for r in c.releases(SERVICE)]


def events(sy: Shipyard, deploy_id: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    with sy.client() as c:
        while page := c.events(deploy_id, after=found[-1]["id"] if found else 0).events:
            found += [e.model_dump(mode="json") for e in page]
    return found


def last_log_stamp(build_log: Path) -> float | None:
    """Time of the last timestamped line of a build log (the build command's last output)."""
    stamp = None
    with contextlib.suppress(FileNotFoundError):
        for line in (build_log / "current").read_text(errors="replace").splitlines():
            head = line.split(" ", 1)[0]
            if head.endswith("Z") and "T" in head:
                with contextlib.suppress(ValueError):
                    stamp = datetime.fromisoformat(head.replace("Z", "+00:00")).timestamp()
    return stamp


def build_phases(sy: Shipyard, rel: dict[str, Any], rdir: Path) -> dict[str, float]:
    """Seconds of: the source copy (copying -> building), the buildCommand (building -> its
    last output line) and what follows the build (making the tree private, then sharing
    with the previous release: last output -> built)."""
    n = rel["number"]
    at: dict[str, float] = {}
    for e in events(sy, int(rel["deploy_id"])) if rel["deploy_id"] else []:
        for key, prefix in (("copy", "copying source"), ("build", "building (")):
            if e["message"].startswith(f"release {n}: {prefix}"):
                at.setdefault(key, e["ts"])
    end = last_log_stamp(rdir / "build-log")
    phases = {}
    if "copy" in at and "build" in at:
        phases["copy_seconds"] = round(at["build"] - at["copy"], 1)
    if "build" in at and end is not None:
        phases["build_command_seconds"] = round(end - at["build"], 1)
    if end is not None and rel["finished_at"]:
        phases["after_build_seconds"] = round(rel["finished_at"] - end, 1)
    return phases


def serves(sy: Shipyard, n: int) -> bool:
    try:
        status, body = sy.get(f"{SERVICE}.localhost", timeout=10)
    except OSError:
        return False
    return status == 200 and revision(n) in body


SHARED_RE = re.compile(
    r"(\d+) unchanged file\(s\), ([\d.]+) MB, shared with release (\d+) \((\w+)\)"
)


def run(count: int, deploy_timeout: float, keep_home: bool) -> dict[str, Any]:
    result: dict[str, Any] = {"releases_requested": count}
    deploys: list[dict[str, Any]] = []
    result["deploys"] = deploys
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-", dir="/tmp") as tmp:
        fs = subprocess.run(
            ["df", "--output=fstype", tmp], capture_output=True, text=True, check=False
        ).stdout.split()
        result["filesystem"] = fs[-1] if fs else "?"
        sy = Shipyard(Path(tmp) / "home")
        repo = Path(tmp) / "repo"
        repo.mkdir()
        bp = repo / "render.yaml"
        try:
            sy.up()
            for n in range(1, count + 1):
                commit(repo, n)
                t0 = time.monotonic()
                out = sy.cli("deploy", "-f", str(bp), "--wait", timeout=deploy_timeout)
                seconds = time.monotonic() - t0
                row: dict[str, Any] = {"deploy": n, "deploy_seconds": round(seconds, 1)}
                deploys.append(row)
                if out.code != 0:
                    row["error"] = out.text[-6000:]
                    result["error"] = f"deploy {n} exited {out.code}"
                    log(f"deploy {n} failed ({out.code}) after {seconds:.1f} s:\n{out.text}")
                    break
                if m := SHARED_RE.search(out.text):
                    row["shared_files"], row["shared_mb"] = int(m[1]), float(m[2])
                    row["share_method"] = m[4]
                ok = False
                deadline = time.monotonic() + 30
                while not (ok := serves(sy, n)) and time.monotonic() < deadline:
                    time.sleep(0.5)
                row["serves_new_revision"] = ok
                log(f"deploy {n}: {seconds:.1f} s, serving {revision(n)}: {ok}", started)
                if not ok:
                    result["error"] = f"deploy {n}: {revision(n)} not served through the edge"
                    break

            rdir = sy.settings.services_dir / SERVICE / "releases"
            rels = sorted(releases(sy), key=lambda r: int(r["number"]))
            by_number = {int(r["number"]): r for r in rels}
            for row in deploys:
                rel = by_number.get(int(row["deploy"]))
                if rel and rel["finished_at"]:
                    row["build_seconds"] = round(rel["finished_at"] - rel["created_at"], 1)
                    row |= build_phases(sy, rel, rdir / str(row["deploy"]))
            result["release_status"] = {int(r["number"]): r["status"] for r in rels}

            dirs = sorted(
                (d for d in rdir.iterdir() if d.name.isdigit()), key=lambda d: int(d.name)
            )
            n_rel = len(dirs)
            real = du(rdir)[0]
            full_copies = du(rdir, flags=("-l",))[0]
            one = dirs[-1]
            one_blocks = du(one, flags=("-l",))[0]
            one_apparent = du(one, flags=("-l", "--apparent-size"))[0]
            per_release = du(*dirs)
            rows = release_usage(dirs)
            for row_, du_bytes in zip(rows, per_release, strict=True):
                row_["added_mb_du"] = round(du_bytes / MB, 1)
            build_home = sy.settings.services_dir / SERVICE / "build-home"
            builds = [r["build_seconds"] for r in deploys if "build_seconds" in r]
            result |= {
                "releases_on_disk": n_rel,
                "real_disk_mb_all_releases": round(real / MB, 1),
                "full_copies_mb_all_releases": round(full_copies / MB, 1),
                "ratio_now_over_full_copies": round(real / full_copies, 3),
                "one_release_full_mb": round(one_blocks / MB, 1),
                "one_release_apparent_mb": round(one_apparent / MB, 1),
                "n_full_copies_of_last_mb": round(n_rel * one_blocks / MB, 1),
                "first_release_mb": round(per_release[0] / MB, 1),
                "later_release_added_mb_median": (
                    round(statistics.median(per_release[1:]) / MB, 1) if n_rel > 1 else None
                ),
                # the npm cache builds keep in the service's build HOME, outside the releases
                "build_home_mb": round(du(build_home)[0] / MB, 1) if build_home.exists() else None,
                "build_seconds": {
                    "first": builds[0] if builds else None,
                    "later_median": round(statistics.median(builds[1:]), 1)
                    if len(builds) > 1
                    else None,
                    "later_min": min(builds[1:]) if len(builds) > 1 else None,
                    "later_max": max(builds[1:]) if len(builds) > 1 else None,
                    **{
                        f"later_{key}_median": round(statistics.median(vals), 1)
                        for key in ("copy_seconds", "build_command_seconds", "after_build_seconds")
                        if (vals := [r[key] for r in deploys[1:] if key in r])
                    },
                },
                "per_release": rows,
            }
        except Exception as exc:
            result.setdefault("error", f"{type(exc).__name__}: {exc}")
            log(f"failed: {type(exc).__name__}: {exc}")
        finally:
            log("shipyard down", started)
            shut_down(sy, tmp, result)
            if keep_home:
                result["kept_home"] = str(keep(sy.home))
    result["total_seconds"] = round(time.monotonic() - started, 1)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--releases", type=int, default=10, help="deploys, one release each")
    parser.add_argument("--deploy-timeout", type=float, default=1200, help="seconds per deploy")
    parser.add_argument(
        "--keep-home", action="store_true", help="keep the Shipyard home (moved under /tmp)"
    )
    args = parser.parse_args()
    if args.releases < 1:
        parser.error("--releases must be at least 1")
    result = run(args.releases, args.deploy_timeout, args.keep_home)
    report = {
        "benchmark": "release_disk",
        "app": "Next.js 15 pages app like render-examples/nextjs-hello-world (npm, not yarn)",
        "cpus": psutil.cpu_count(),
        **result,
    }
    print(json.dumps(report, indent=2))
    if "error" in result or result.get("processes_left_after_down"):
        print(f"release_disk: FAILED: {result.get('error') or 'processes left after down'}")
        return 1
    b = result["build_seconds"]
    print(
        f"release_disk: {result['releases_on_disk']} releases use "
        f"{result['real_disk_mb_all_releases']} MB on disk vs "
        f"{result['full_copies_mb_all_releases']} MB as full copies "
        f"(ratio {result['ratio_now_over_full_copies']}; one release "
        f"{result['one_release_full_mb']} MB, each later one adds "
        f"{result['later_release_added_mb_median']} MB); build {b['first']} s first, "
        f"{b['later_median']} s median after"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
