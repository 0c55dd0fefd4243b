#!/usr/bin/env bash
# Installs the system packages Shipyard drives: HAProxy (edge), git (sources), Node (sample apps),
# wrk (benchmarks), a C compiler for the log writer (native/logd), and the datastores Shipyard
# manages: PostgreSQL (server, client, contrib for pgbench), pgBackRest, Redis. Idempotent; uses
# sudo when not root.
set -euo pipefail
need=()
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
command -v git >/dev/null 2>&1 || need+=(git)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v cc >/dev/null 2>&1 || need+=(gcc libc6-dev)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql postgresql-contrib)
command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
command -v pgbackrest >/dev/null 2>&1 || need+=(pgbackrest)
command -v setfacl >/dev/null 2>&1 || need+=(acl)
command -v zstd >/dev/null 2>&1 || need+=(zstd)
command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || need+=(redis-server)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing system packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
