"""The notary's Prometheus metrics (docs/api.md), kept by ``prometheus_client``.

The text exposition format is Prometheus's (exposition formats, text 0.0.4);
``prometheus_client`` writes it. The sequencer counts through
:class:`ServiceMetrics`; ``GET /metrics`` answers :meth:`ServiceMetrics.render`.

With ``certmail notary serve --workers N`` each worker is its own process:
``prometheus_client``'s multiprocess mode adds their counters and histograms
up. :mod:`notary.serve` points ``PROMETHEUS_MULTIPROC_DIR`` at a directory
private to one serve (emptied at start) before the workers start, so every
worker writes its values there and any worker's ``/metrics`` answers the
totals, including those of a worker that has since been replaced. The tree
size is read from the log at scrape time, so it is the same in every worker.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from notary.sequencer import Metrics

__all__ = ["CONTENT_TYPE", "MULTIPROC_ENV", "ServiceMetrics", "multiprocess_dir"]

#: The environment variable naming the directory of multiprocess mode.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: The media type of :meth:`ServiceMetrics.render`'s text.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

BATCH_SIZE_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384)
COMMIT_SECONDS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


def multiprocess_dir() -> str | None:
    """The multiprocess directory this process writes its values to, if any."""
    return os.environ.get(MULTIPROC_ENV) or None


class _TreeSize(Collector):
    """``certmail_log_tree_size``, read from the log when scraped."""

    def __init__(self, size: Callable[[], int]) -> None:
        self.size = size

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "certmail_log_tree_size",
            "Entries in the log at the latest checkpoint.",
            value=self.size(),
        )


class ServiceMetrics(Metrics):
    """The sequencer's counters, also kept as Prometheus metrics.

    ``tree_size`` reads the log's size at the latest checkpoint (what
    ``certmail_log_tree_size`` reports). The in-process counts of
    :class:`notary.sequencer.Metrics` stay as they are (the relay reads
    ``tree_size`` from them).
    """

    def __init__(self, tree_size: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        self._tree_size = _TreeSize(tree_size)
        r = self.registry
        self._entries = Counter("certmail_log_entries", "Entries appended to the log.", registry=r)
        self._failed = Counter(
            "certmail_log_failed_batches", "Batches that failed to commit.", registry=r
        )
        self._forwarded = Counter(
            "certmail_sequencer_forwarded",
            "Submissions sent to the worker that sequences (serve --workers N).",
            registry=r,
        )
        self._batch_size = Histogram(
            "certmail_sequencer_batch_size",
            "Entries per committed batch.",
            buckets=BATCH_SIZE_BUCKETS,
            registry=r,
        )
        self._commit_seconds = Histogram(
            "certmail_sequencer_commit_seconds",
            "Time to stamp, sign and commit one batch.",
            buckets=COMMIT_SECONDS_BUCKETS,
            registry=r,
        )
        super().__init__()
        r.register(self._tree_size)

    def observe(self, size: int, seconds: float, tree_size: int) -> None:
        super().observe(size, seconds, tree_size)
        self._entries.inc(size)
        self._batch_size.observe(size)
        self._commit_seconds.observe(seconds)

    def forward(self, size: int) -> None:
        super().forward(size)
        self._forwarded.inc(size)

    def batch_failed(self) -> None:
        super().batch_failed()
        self._failed.inc()

    def render(self) -> bytes:
        """The text exposition: this process's metrics, or every worker's added up."""
        directory = multiprocess_dir()
        if directory is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
        registry.register(self._tree_size)
        return generate_latest(registry)
