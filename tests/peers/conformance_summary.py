#!/usr/bin/env python3
"""Normalise the result files of the MCP conformance CLI into summary.json.

    conformance_summary.py OUTDIR SUITE...

Reads, for every SUITE:
  OUTDIR/raw/SUITE/server-<scenario>-<timestamp>/checks.json   (one per scenario run)
  OUTDIR/raw/SUITE.list    output of `conformance list --server ...` (expected scenarios)
  OUTDIR/SUITE.log         console output (scenario start markers)
  OUTDIR/runs.tsv          suite, exit code, seconds

Writes OUTDIR/summary.json  {"SUITE/scenario": "pass"|"fail"}  (sorted keys)
and    OUTDIR/details.json  (counts per scenario, scored or not, run info).
A scenario passes when it produced checks.json and none of its checks has
status FAILURE (WARNING, SKIPPED and INFO do not fail it).
"""
import json
import re
import sys
from pathlib import Path

TS_SUFFIX = re.compile(r"-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}(?:-\d+)?Z?$")


def scenario_from_dir(name: str) -> str:
    name = TS_SUFFIX.sub("", name)
    return name[len("server-"):] if name.startswith("server-") else name


def parse_list(text: str):
    """Return (scored, not_scored) server scenario names from `list` output."""
    scored, not_scored = [], []
    section = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("Server scenarios"):
            section = "server"
            continue
        if stripped.startswith("Client scenarios") or stripped.startswith("Authorization"):
            section = "other"
            continue
        if stripped.startswith("Run and reported, but never scored"):
            section = "not_scored"
            continue
        m = re.match(r"^-\s+(\S+)(?:\s+\[([^\]]*)\])?", stripped)
        if not m:
            continue
        name, tag = m.group(1), m.group(2) or ""
        if section == "server":
            scored.append(name)
        elif section == "not_scored" and tag == "server":
            not_scored.append(name)
    return scored, not_scored


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(sys.argv[1])
    suites = sys.argv[2:]
    runs = {}
    runs_file = out / "runs.tsv"
    if runs_file.exists():
        for line in runs_file.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) == 3:
                runs[parts[0]] = {"exit_code": int(parts[1]), "seconds": int(parts[2]),
                                  "timed_out": parts[1] in ("124", "137")}

    summary, details = {}, {"runs": runs, "scenarios": {}}
    for suite in suites:
        raw = out / "raw" / suite
        list_file = out / "raw" / f"{suite}.list"
        scored, not_scored = parse_list(list_file.read_text()) if list_file.exists() else ([], [])
        results = {}
        if raw.is_dir():
            for checks_file in sorted(raw.glob("*/checks.json")):
                scenario = scenario_from_dir(checks_file.parent.name)
                try:
                    checks = json.loads(checks_file.read_text())
                except (OSError, ValueError) as exc:
                    results[scenario] = {"status": "fail", "error": f"unreadable checks.json: {exc}"}
                    continue
                counts = {}
                failures = []
                for check in checks if isinstance(checks, list) else []:
                    st = check.get("status", "UNKNOWN")
                    counts[st] = counts.get(st, 0) + 1
                    if st == "FAILURE":
                        failures.append(f"{check.get('id')}: {(check.get('errorMessage') or '')[:300]}")
                prev = results.get(scenario)
                status = "fail" if failures or not checks else "pass"
                if prev and prev["status"] == "fail":
                    status = "fail"
                results[scenario] = {"status": status, "counts": counts, "failures": failures}
        log_file = out / f"{suite}.log"
        started = []
        if log_file.exists():
            started = re.findall(r"Running (?:client )?scenario '([^']+)'", log_file.read_text(errors="replace"))
        for scenario in list(dict.fromkeys(scored + not_scored + started)):
            if scenario not in results:
                results[scenario] = {"status": "fail", "error": "no result (scenario did not run or crashed)"}
        for scenario, info in sorted(results.items()):
            key = f"{suite}/{scenario}"
            summary[key] = info["status"]
            info["scored"] = scenario in scored if scored or not_scored else None
            details["scenarios"][key] = info

    (out / "summary.json").write_text(json.dumps(dict(sorted(summary.items())), indent=2) + "\n")
    (out / "details.json").write_text(json.dumps(details, indent=2, sort_keys=True) + "\n")
    passed = sum(1 for v in summary.values() if v == "pass")
    print(f"conformance summary: {passed} pass, {len(summary) - passed} fail", file=sys.stderr)
    for key, value in sorted(summary.items()):
        if value != "pass":
            print(f"  fail {key}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
