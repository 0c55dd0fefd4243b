"""The HAProxy edge driver: config rendering (pure), runtime API client, and the Router."""

from shipyard.drivers.haproxy.config import EdgeOptions, render_config, server_args
from shipyard.drivers.haproxy.edge import HAProxyEdge

__all__ = ["EdgeOptions", "HAProxyEdge", "render_config", "server_args"]
