"""Numbers and where they go: percentiles and spread of repeated measurements, and a result
written as JSON (everything) and Markdown (the table), with the machine it was measured on."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.machine import one_line

DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linearly interpolated between the closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Spread:
    """Repeated measurements of one thing: the median and how far the repetitions strayed."""

    median: float
    low: float
    high: float
    samples: tuple[float, ...]

    @classmethod
    def of(cls, samples: Sequence[float]) -> Spread:
        return cls(statistics.median(samples), min(samples), max(samples), tuple(samples))

    @property
    def relative(self) -> float:
        """(high - low) / median: 0.05 means the repetitions agree within 5 %."""
        return (self.high - self.low) / self.median if self.median else math.nan

    def show(self, digits: int = 1, unit: str = "") -> str:
        return f"{self.median:.{digits}f}{unit} ({self.low:.{digits}f}-{self.high:.{digits}f})"


@dataclass(frozen=True)
class Target:
    name: str
    wanted: str
    measured: str
    met: bool


@dataclass(frozen=True)
class Summary:
    """One line of the table of all benchmarks."""

    what: str
    measured: str
    baseline: str
    ratio: str
    target: str
    met: bool | None  # None: no target


SUMMARY_HEADER = (
    "| benchmark | measured | baseline (same run) | ratio | target | met |\n"
    "|---|---|---|---|---|---|\n"
)


@dataclass
class Result:
    """One benchmark's run. `columns`: (row key, header) of the Markdown table."""

    name: str
    title: str
    method: str
    columns: list[tuple[str, str]]
    rows: list[dict[str, Any]] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    headline: list[str] = field(default_factory=list)  # the ratios, printed at the end
    summary: list[Summary] = field(default_factory=list)  # its lines in the README's table
    machine: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)

    def markdown(self) -> str:
        lines = [f"### {self.title}", "", self.method, ""]
        lines.append("| " + " | ".join(header for _, header in self.columns) + " |")
        lines.append("|" + "---|" * len(self.columns))
        for row in self.rows:
            cells = [_cell(row.get(key, "")) for key, _ in self.columns]
            lines.append("| " + " | ".join(cells) + " |")
        if self.targets:
            lines += ["", "| target | wanted | measured | met |", "|---|---|---|---|"]
            for t in self.targets:
                met = "yes" if t.met else "**no**"
                lines.append(f"| {t.name} | {t.wanted} | {t.measured} | {met} |")
        if self.notes:
            lines.append("")
            lines += [f"- {note}" for note in self.notes]
        if self.machine:
            lines += ["", f"Machine: {one_line(self.machine)}."]
        return "\n".join(lines) + "\n"

    def write(self, out: Path) -> tuple[Path, Path]:
        out.mkdir(parents=True, exist_ok=True)
        data = asdict(self)
        data["targets"] = [asdict(t) for t in self.targets]
        data["summary"] = [asdict(line) for line in self.summary]
        json_path, md_path = out / f"{self.name}.json", out / f"{self.name}.md"
        json_path.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")
        md_path.write_text(self.markdown())
        return json_path, md_path

    def print_summary(self) -> None:
        print()
        print(f"== {self.title}")
        for line in self.headline:
            print(f"   {line}")
        for t in self.targets:
            print(
                f"   target {t.name}: {t.wanted}; measured {t.measured}: "
                f"{'met' if t.met else 'NOT MET'}"
            )


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value).replace("|", "\\|")


def _json_default(value: Any) -> Any:
    if isinstance(value, Spread):
        return asdict(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON")
