#!/usr/bin/env python3
"""No function of the product's code is longer than 80 lines: lists those that
are (tests, test modules, examples and benchmarks aside) and exits 1 when
there is one."""

import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
LIMIT = 80
FN = re.compile(r"^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?(extern\s+\"[^\"]*\"\s+)?fn\s+(\w+)")


def strip(line: str) -> str:
    """The line without string contents and comments (good enough to count
    braces)."""
    line = re.sub(r'"(\\.|[^"\\])*"', '""', line)
    line = re.sub(r"'(\\.|[^'\\])'", "''", line)
    return line.split("//", 1)[0]


def long_functions(path: pathlib.Path):
    lines = path.read_text(encoding="utf-8").splitlines()
    out, i = [], 0
    in_raw = False
    while i < len(lines):
        line = lines[i]
        if re.match(r"^\s*#\[cfg\(test\)\]", line):
            break  # test modules come last in this code base
        m = FN.match(line)
        if m:
            depth, start, j, opened = 0, i, i, False
            while j < len(lines):
                s = strip(lines[j])
                if not opened and ";" in s and "{" not in s:
                    break  # a declaration without a body
                depth += s.count("{") - s.count("}")
                if "{" in s:
                    opened = True
                if opened and depth <= 0:
                    break
                j += 1
            length = j - start + 1
            if opened and length > LIMIT:
                out.append((m.group(7), start + 1, length))
            i = j + 1 if opened else i + 1
            continue
        i += 1
    return out


def main() -> int:
    files = subprocess.check_output(["git", "ls-files", "*.rs"], cwd=ROOT, text=True).split()
    skip = ("tests/", "/tests/", "examples/", "/examples/", "fuzz/", "/benches/", "testkit/")
    bad = []
    for f in files:
        if f.startswith(skip[0]) or any(s in f for s in skip[1:]) or f.startswith("testkit/"):
            continue
        for name, line, length in long_functions(ROOT / f):
            bad.append(f"{f}:{line}: fn {name} is {length} lines (at most {LIMIT})")
    for b in bad:
        print(b)
    print(f"check_fn_length: {len(bad)} functions over {LIMIT} lines")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
