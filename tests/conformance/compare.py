#!/usr/bin/env python3
"""Check that every conformance scenario passing in EXPECTED also passes in ACTUAL.

    compare.py expected.json actual.json [--ignore GLOB]...

Both files map "<suite>/<scenario>" to "pass" or "fail" (the summary.json that
tests/peers/conformance.sh writes). EXPECTED is typically
tests/conformance/expected-direct.json (the fixture measured directly), ACTUAL a
run through the gateway. A scenario that passes in EXPECTED but fails or is
missing in ACTUAL is a regression. Scenarios that fail in EXPECTED are ignored;
scenarios passing only in ACTUAL are reported as notes. --ignore GLOB
(fnmatch on the "<suite>/<scenario>" key, repeatable) drops scenarios from the
comparison, e.g. --ignore 'next-*/server-sse-polling'.

Exit status: 0 = no regression, 1 = regressions (listed on stderr),
2 = usage or input error.
"""
import fnmatch
import json
import sys


def load(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:
        print(f"compare.py: cannot read {path}: {exc}", file=sys.stderr)
        sys.exit(2)
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        print(f"compare.py: {path} is not a {{scenario: status}} object", file=sys.stderr)
        sys.exit(2)
    return data


def main(argv: list) -> int:
    positional, ignore = [], []
    args = iter(argv[1:])
    for arg in args:
        if arg in ("-h", "--help"):
            print(__doc__, file=sys.stderr)
            return 2
        if arg == "--ignore":
            pattern = next(args, None)
            if pattern is None:
                print("compare.py: --ignore needs a pattern", file=sys.stderr)
                return 2
            ignore.append(pattern)
        elif arg.startswith("--ignore="):
            ignore.append(arg.split("=", 1)[1])
        else:
            positional.append(arg)
    if len(positional) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    argv = [argv[0], *positional]
    expected, actual = load(argv[1]), load(argv[2])
    ignored = lambda key: any(fnmatch.fnmatchcase(key, pat) for pat in ignore)  # noqa: E731
    expected = {k: v for k, v in expected.items() if not ignored(k)}
    actual = {k: v for k, v in actual.items() if not ignored(k)}
    must_pass = sorted(k for k, v in expected.items() if v == "pass")
    regressions = [(k, actual.get(k, "missing")) for k in must_pass if actual.get(k) != "pass"]
    newly_passing = sorted(k for k, v in actual.items() if v == "pass" and expected.get(k) != "pass")

    for key in newly_passing:
        print(f"note: {key} passes in {argv[2]} but not in {argv[1]}", file=sys.stderr)
    if regressions:
        print(f"compare.py: {len(regressions)} of {len(must_pass)} expected-passing scenarios do not pass:", file=sys.stderr)
        for key, status in regressions:
            print(f"  {key}: {status}", file=sys.stderr)
        return 1
    print(f"compare.py: all {len(must_pass)} expected-passing scenarios pass", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
