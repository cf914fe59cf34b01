"""Every benchmark, one after the other, then the table of all of them (`summary.md` beside
their results): `make bench`, or

    .venv/bin/python -m bench [--quick] [--out DIR] [--only NAME,…]   (BENCHMARKS below)

A benchmark that cannot run here (no `wrk`, no PostgreSQL, no buildah or root) says why; the
others still run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from bench.machine import one_line
from bench.report import DEFAULT_OUT, SUMMARY_HEADER

BENCHMARKS = ("webhook", "revocation", "action", "broker", "ledger", "image", "storm", "logscan")


def summary(out: Path, names: Sequence[str]) -> str:
    lines = [SUMMARY_HEADER.rstrip("\n")]
    # The host (CPU, OS, versions) and commit → its first benchmark's full line and the
    # benchmarks of that run: one `make bench` is one; one retaken alone (`--only`) may not be.
    machines: dict[tuple[str, str], tuple[str, list[str]]] = {}
    for name in names:
        path = out / f"{name}.json"
        if not path.exists():
            continue
        data = json.loads(path.read_text())
        line = one_line(data["machine"])
        host = (line.split("; ")[0], data["machine"]["commit"])
        machines.setdefault(host, (line, []))[1].append(name)
        for s in data["summary"]:
            met = "-" if s["met"] is None else ("yes" if s["met"] else "**no**")
            cells = [s["what"], s["measured"], s["baseline"], s["ratio"], s["target"], met]
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    if len(machines) == 1:
        lines += ["", f"Machine: {next(iter(machines.values()))[0]}."]
    for line, measured in machines.values() if len(machines) > 1 else ():
        lines += ["", f"Machine ({', '.join(measured)}): {line}."]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="toy sizes: seconds, not minutes")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--only", help="comma-separated benchmarks (default: all)")
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(BENCHMARKS)
    unknown = set(names) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(sorted(unknown))}; use {BENCHMARKS}")
    started, failed = time.monotonic(), []
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        options = ["--out", str(args.out), *(["--quick"] if args.quick else [])]
        try:
            module.main(options)
        except Exception as exc:
            failed.append(name)
            print(f"\n== {name}: could not run: {exc}", file=sys.stderr)
            traceback.print_exc(file=sys.stderr)
    # The table of every benchmark with results in `out`: `--only` retakes some and keeps the rest.
    table = summary(args.out, [n for n in BENCHMARKS if n not in failed])
    (args.out / "summary.md").write_text(table)
    print("\n" + table)
    print(f"all benchmarks took {time.monotonic() - started:.0f} s; results in {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
