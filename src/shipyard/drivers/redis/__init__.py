"""Key Value (Redis) instances Shipyard manages: redis.conf (config.py, pure), INFO (info.py,
pure), the data directory and config file (files.py), a client of a running server
(client.py), sealed backups and restores (backup.py), and a server started directly for tests
and benchmarks (standalone.py; the control plane starts servers through its Runtime with
``server_command``).
"""

from shipyard.drivers.redis.backup import (
    KeyValueBackup,
    RdbCheck,
    RestoreStart,
    backup,
    check_rdb,
    finish_restore,
    prepare_restore,
    snapshot,
)
from shipyard.drivers.redis.client import KeyValueClient
from shipyard.drivers.redis.config import (
    DEFAULT_MAXMEMORY_POLICY,
    MAXMEMORY_POLICIES,
    KeyValueConfig,
    plan_memory,
    render_config,
    server_command,
)
from shipyard.drivers.redis.files import config_path, write_config
from shipyard.drivers.redis.info import KeyValueInfo

__all__ = [
    "DEFAULT_MAXMEMORY_POLICY",
    "MAXMEMORY_POLICIES",
    "KeyValueBackup",
    "KeyValueClient",
    "KeyValueConfig",
    "KeyValueInfo",
    "RdbCheck",
    "RestoreStart",
    "backup",
    "check_rdb",
    "config_path",
    "finish_restore",
    "plan_memory",
    "prepare_restore",
    "render_config",
    "server_command",
    "snapshot",
    "write_config",
]
