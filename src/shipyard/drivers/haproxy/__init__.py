"""The HAProxy edge driver: layout and config rendering (pure), runtime API client, Router."""

from shipyard.drivers.haproxy.config import EdgeOptions, render_config, server_args
from shipyard.drivers.haproxy.edge import HAProxyEdge
from shipyard.drivers.haproxy.layout import Layout

__all__ = ["EdgeOptions", "HAProxyEdge", "Layout", "render_config", "server_args"]
