"""The edge's files in ``opts.dir``.

They are always written before the runtime change they describe (atomically, each), so that a
reload (which re-reads them) never forgets anything:

- ``haproxy.cfg``: pool slots, bound internal ports, and the servers of every slot;
- ``hosts.map``, ``ports.map``, ``health.map``, ``checkhost.map`` (see view.py);
- ``layout.json``: pool sizes, bound ports and the service -> slot assignment (layout.py);
- ``haproxy.cfg.loaded``: the config (server lines removed) the running worker loaded, written
  only after a successful start or reload, so a daemon that died between writing the file and
  reloading still reloads after adoption;
- ``server-state``: dumped before each reload so server states survive it.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Mapping
from pathlib import Path

from shipyard.drivers.haproxy.config import HOLD_LUA, EdgeOptions
from shipyard.drivers.haproxy.layout import Layout, initial_layout
from shipyard.drivers.haproxy.view import MAPS, MapName
from shipyard.errors import EdgeError

EMPTY_STATE = "1\n"

Backup = dict[Path, str | None]


class EdgeFiles:
    """Writes the files of ``opts.dir``, each only if its content changed (what was written is
    remembered), and keeps the ``haproxy.cfg.loaded`` marker (read once, then cached)."""

    def __init__(self, opts: EdgeOptions) -> None:
        self._opts = opts
        self._written: dict[Path, str] = {}
        self._loaded: str | None = None  # cache of haproxy.cfg.loaded

    @property
    def marker(self) -> Path:
        return self._opts.dir / "haproxy.cfg.loaded"

    def write_all(self, layout: Layout, text: str, maps: Mapping[MapName, str]) -> None:
        """Maps, then the layout, then the config; each only if it changed."""
        self.write(self._opts.lua_path, HOLD_LUA)
        for name in MAPS:
            self.write(self._opts.map_path(name), maps[name])
        self.write(self._opts.layout_file, layout.to_json())
        self.write(self._opts.config_path, text)

    def write(self, path: Path, text: str) -> None:
        if self._written.get(path) == text:
            return
        if path not in self._written and read_text(path) == text:
            self._written[path] = text
            return
        write_atomic(path, text)
        self._written[path] = text

    def backup(self) -> Backup:
        """The config, the layout and the maps as they are now (None: absent)."""
        paths = [self._opts.config_path, self._opts.layout_file]
        paths += [self._opts.map_path(name) for name in MAPS]
        return {path: read_text(path) for path in paths}

    def restore(self, backup: Backup) -> None:
        """Put back the files of ``backup`` (after a failed reload: the old worker serves them)."""
        self._written.clear()
        for path, previous in backup.items():
            if previous is None:
                path.unlink(missing_ok=True)
            else:
                write_atomic(path, previous)

    def read_layout(self) -> Layout:
        text = read_text(self._opts.layout_file)
        if text is not None:
            with contextlib.suppress(EdgeError):  # unreadable: start over (a reload follows)
                return Layout.from_json(text)
        return initial_layout(self._opts.policy)

    def loaded_skeleton(self) -> str | None:
        if self._loaded is None:
            self._loaded = read_text(self.marker)
        return self._loaded

    def set_loaded(self, skeleton: str) -> None:
        write_atomic(self.marker, skeleton)
        self._loaded = skeleton


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` atomically (rename). No fsync: these files matter only to a running
    HAProxy, and after a power loss (which stops HAProxy too) ensure_running rewrites every one
    of them from the table before starting it; a damaged layout.json is ignored then."""
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}.{threading.get_ident()}")
    tmp.write_text(text)
    tmp.replace(path)


def read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
