"""The service's `/metrics` under several workers reads every worker's metric file, and a file
a worker has created but not yet sized does not fail the scrape."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.mmap_dict import MmapedDict, mmap_key

from handler.metrics import WorkerFiles


def write_counter(path: Path, name: str, value: float) -> None:
    """A worker's counter file, as prometheus_client's multiprocess mode writes it."""
    values = MmapedDict(str(path))  # type: ignore[no-untyped-call]
    values.write_value(mmap_key(name, name + "_total", [], [], ""), value, 0.0)  # type: ignore[no-untyped-call]
    values.close()  # type: ignore[no-untyped-call]


def test_an_empty_worker_file_is_skipped_and_the_others_are_added_up(tmp_path: Path) -> None:
    write_counter(tmp_path / "counter_101.db", "runkeys_webhook_deliveries", 3)
    write_counter(tmp_path / "counter_102.db", "runkeys_webhook_deliveries", 4)
    (tmp_path / "counter_103.db").write_bytes(b"")  # created, not yet sized
    registry = CollectorRegistry()
    WorkerFiles(registry, str(tmp_path))
    text = generate_latest(registry).decode()
    assert "runkeys_webhook_deliveries_total 7.0" in text


def test_no_files_is_no_metrics(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    WorkerFiles(registry, str(tmp_path))
    assert "runkeys_webhook_deliveries" not in generate_latest(registry).decode()
