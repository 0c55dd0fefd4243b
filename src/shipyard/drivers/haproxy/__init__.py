"""The HAProxy edge driver: layout and config rendering (pure), runtime API client, Router.

Modules: layout.py (slots and internal ports), view.py (desired runtime state, sync plans),
config.py (config and map rendering, validation) are pure; parse.py (runtime API answers, pure),
transport.py (admin socket pool, master CLI) and runtime.py (the runtime API commands) speak to
HAProxy; edge.py (HAProxyEdge, the Router) uses process.py (start, adopt, stop), files.py (the
files in the edge directory), check.py (``haproxy -c``) and sync.py (the runtime sync).
"""

from shipyard.drivers.haproxy.config import EdgeOptions, render_config, server_args
from shipyard.drivers.haproxy.edge import HAProxyEdge
from shipyard.drivers.haproxy.layout import Layout

__all__ = ["EdgeOptions", "HAProxyEdge", "Layout", "render_config", "server_args"]
