"""The log scan (issue 18): a run's log archive of 50 MB of text, laid out as GitHub makes it
(a zip of step logs and job logs, every line stamped), scanned for a run's keys by the worker's
own code (`handler.logscan.scan_archive`). Baseline: the same archive unzipped and decoded, and
nothing looked for, in the same run.

    .venv/bin/python -m bench.logscan [--quick] [--megabytes 50] [--repeat 3]

The text is made up to look like CI output (test runners, package installs with digests,
URLs, ids, masked values) with a few keys planted in it, base64-encoded and as they are: the
scan must find each planted key, and nothing else. Method: docs/benchmarks.md#method."""

from __future__ import annotations

import base64
import hashlib
import io
import random
import secrets
import sys
import time
import uuid
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import parser, run_benchmark
from bench.report import Result, Spread, Summary, Target
from handler.logscan import scan_archive
from runkeys.leases import fingerprint
from runkeys.providers.random_value import make_token

TARGET_SECONDS = 5.0


@dataclass(frozen=True)
class Settings:
    megabytes: int = 50  # of log text, the archive's size unzipped
    repeat: int = 3
    planted: int = 6  # keys printed in the logs (half base64-encoded)
    other_keys: int = 200  # fingerprints looked for that are nowhere in the logs
    jobs: int = 8
    steps: int = 12  # per job


QUICK = Settings(megabytes=2, repeat=2)

_WORDS = (
    "PASSED", "FAILED", "collected", "items", "warnings", "Downloading", "Installing",
    "Requirement", "already", "satisfied", "npm", "WARN", "deprecated", "Run", "make", "test",
    "::group::", "##[endgroup]", "***", "node_modules", "tests/unit/test_api.py::test_create_user",
    "Successfully", "built", "wheel", "cached", "0.12s", "100%", "[ 42%]", "ok", "GET", "200",
)  # fmt: skip


def _line(rng: random.Random) -> str:
    """One made-up line of CI output: mostly words, now and then something long and random."""
    kind = rng.random()
    if kind < 0.05:
        digest = hashlib.sha256(rng.randbytes(16)).hexdigest()
        return f"  Downloading pkg-{rng.randint(1, 99)}.tar.gz (sha256:{digest})"
    if kind < 0.08:
        return f"request id {uuid.UUID(int=rng.getrandbits(128))} took {rng.random():.3f}s"
    if kind < 0.10:
        blob = base64.b64encode(rng.randbytes(rng.randint(24, 60))).decode()
        return f"layer {blob}"
    if kind < 0.12:
        path = "/".join(rng.choice(_WORDS).strip(":#[]*") or "x" for _ in range(4))
        return f"GET https://files.example.com/{path}?q={rng.randint(0, 10**9)}%20x 200"
    return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 14)))


def make_archive(s: Settings, seed: int = 7) -> tuple[bytes, int, list[str]]:
    """The zip, the bytes of text in it, and the planted keys' fingerprints."""
    rng = random.Random(seed)
    keys = [
        make_token(secrets.token_urlsafe(24).replace("-", "a").replace("_", "b"))
        for _ in range(s.planted)
    ]
    budget = s.megabytes * 1_000_000
    per_step = budget // (s.jobs * s.steps)
    stamp = "2026-12-07T05:00:00.0000000Z "
    buffer, text_bytes = io.BytesIO(), 0
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as made:
        planted = iter(keys)
        for job in range(1, s.jobs + 1):
            whole: list[str] = []
            for step in range(1, s.steps + 1):
                lines, size = [], 0
                while size < per_step:
                    line = stamp + _line(rng)
                    lines.append(line)
                    size += len(line) + 1
                key = next(planted, None) if step == s.steps // 2 else None
                if key is not None:
                    shown = base64.b64encode(key.encode()).decode() if job % 2 else key
                    lines.insert(len(lines) // 2, f"{stamp}debug {shown}")
                text = "\n".join(lines) + "\n"
                text_bytes += len(text.encode())
                whole.append(text)
                made.writestr(f"job {job}/{step}_step {step}.txt", text)
            made.writestr(f"{job}_job {job}.txt", "".join(whole))
    return buffer.getvalue(), text_bytes, [fingerprint(k) for k in keys]


def _floor(data: bytes) -> None:
    """The baseline: the same archive opened, unzipped and decoded, nothing looked for."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for member in archive.infolist():
            if "/" in member.filename:
                archive.read(member).decode("utf-8", errors="replace")


def run(s: Settings, tmp: Path) -> Result:
    data, text_bytes, planted = make_archive(s)
    wanted = set(planted) | {fingerprint(secrets.token_urlsafe(32)) for _ in range(s.other_keys)}
    scans, cpus, floors, found = [], [], [], 0
    for _ in range(s.repeat):
        started = time.perf_counter()
        _floor(data)
        floors.append(time.perf_counter() - started)
        started, cpu = time.perf_counter(), time.process_time()
        result = scan_archive(data, wanted, max_bytes=10 * text_bytes)
        scans.append(time.perf_counter() - started)
        cpus.append(time.process_time() - cpu)
        found = len(result.findings)
    scan, floor, used = Spread.of(scans), Spread.of(floors), Spread.of(cpus)
    megabytes = text_bytes / 1_000_000
    rate = megabytes / scan.median
    found_ok = found == len(planted) and {f.found.hit.fingerprint for f in result.findings} == set(
        planted
    )
    targets = [
        Target(
            f"{s.megabytes} MB of logs scanned",
            f"under {TARGET_SECONDS:g} s",
            f"{scan.median:.2f} s",
            scan.median < TARGET_SECONDS,
        ),
        Target("every planted key found, nothing else", f"{len(planted)}", f"{found}", found_ok),
    ]
    rows: list[dict[str, Any]] = [
        {
            "what": "scan (unzip, decode, look for every key)",
            "seconds": scan.show(2),
            "cpu": used.show(2),
            "rate": f"{rate:.1f} MB/s",
            "found": found,
        },
        {
            "what": "baseline: unzip and decode only",
            "seconds": floor.show(2),
            "cpu": "-",
            "rate": f"{megabytes / floor.median:.1f} MB/s",
            "found": "-",
        },
    ]
    return Result(
        name="logscan",
        title=f"The log scan of a {s.megabytes} MB run log",
        method=f"A made-up run log of {megabytes:.1f} MB of text ({len(data) / 1e6:.1f} MB zipped; "
        f"{s.jobs} jobs of {s.steps} steps, as GitHub lays the archive out) scanned "
        f"{s.repeat} times by `handler.logscan.scan_archive` for {len(wanted)} fingerprints, "
        f"{len(planted)} of them keys planted in it (half base64-encoded).",
        columns=[
            ("what", "what"),
            ("seconds", "seconds"),
            ("cpu", "CPU seconds"),
            ("rate", "MB of text/s"),
            ("found", "keys found"),
        ],
        rows=rows,
        targets=targets,
        settings={**s.__dict__},
        notes=[
            "Only the step logs are read: each job's own log repeats its steps' lines.",
            "The time is the scan's alone: the download from GitHub is not in it. Seconds are "
            "wall-clock time (the target's); CPU seconds are the process's own, which a busy "
            "machine does not stretch (the load average is in the machine line).",
        ],
        headline=[
            f"{rate:.1f} MB/s ({megabytes / used.median:.1f} MB per CPU second); "
            f"{scan.median / floor.median:.1f}x unzipping alone"
        ],
        summary=[
            Summary(
                f"log scan, {s.megabytes} MB of run logs",
                f"{scan.median:.2f} s ({rate:.0f} MB/s)",
                f"unzip only: {floor.median:.2f} s",
                f"{scan.median / floor.median:.1f}x",
                f"< {TARGET_SECONDS:g} s",
                scan.median < TARGET_SECONDS,
            )
        ],
        raw={
            "scans": scans,
            "cpu": cpus,
            "floors": floors,
            "zip_bytes": len(data),
            "text_bytes": text_bytes,
        },
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = parser("logscan", __doc__ or "")
    p.add_argument("--megabytes", type=int, help="of log text (default 50)")
    args = p.parse_args(argv)
    s = QUICK if args.quick else Settings()
    if args.megabytes:
        s = Settings(**{**s.__dict__, "megabytes": args.megabytes})
    if args.repeat:
        s = Settings(**{**s.__dict__, "repeat": args.repeat})
    return run_benchmark("logscan", run, s, args.out)


if __name__ == "__main__":
    sys.exit(main())
