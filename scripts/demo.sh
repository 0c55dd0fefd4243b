#!/usr/bin/env bash
# make demo: start Shipyard (detached), deploy examples/, print the URLs.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:/usr/sbin:$PATH"
shipyard up -d
shipyard deploy -f examples/render.yaml --wait
echo
shipyard ps
echo
shipyard db list
port="${SHIPYARD_HTTP_PORT:-8080}"
echo
echo "Open http://hello-web.localhost:${port}/  (curl -H 'Host: hello-web.localhost' http://127.0.0.1:${port}/)"
echo "Stop everything with: make demo-down"
