"""A small Prometheus registry: counters, gauges and histograms with labels.

Written here rather than taken from prometheus_client because each of our
processes is a single event loop (no locks needed) and the hot path wants an
increment to be one dict operation. ``render()`` produces the text exposition
format (version 0.0.4) that Prometheus scrapes from ``/metrics``.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable

LabelValues = tuple[str, ...]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Seconds; tuned for a service whose answers take tens of microseconds to a
# few milliseconds, with a tail out to timeouts.
DEFAULT_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
    5.0,
)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: tuple[str, ...], values: LabelValues, extra: str = "") -> str:
    pairs = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        pairs.append(extra)
    return "{" + ",".join(pairs) + "}" if pairs else ""


class Counter:
    def __init__(self, name: str, help_text: str, labels: tuple[str, ...] = ()) -> None:
        self.name, self.help, self.label_names = name, help_text, labels
        self.values: dict[LabelValues, float] = {}

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        self.values[labels] = self.values.get(labels, 0.0) + amount

    def get(self, *labels: str) -> float:
        return self.values.get(labels, 0.0)

    def expose(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} counter"
        for labels, value in sorted(self.values.items()):
            yield f"{self.name}{_labels(self.label_names, labels)} {value:g}"


class Gauge:
    def __init__(
        self,
        name: str,
        help_text: str,
        labels: tuple[str, ...] = (),
        read: Callable[[], float] | None = None,
    ) -> None:
        self.name, self.help, self.label_names = name, help_text, labels
        self.values: dict[LabelValues, float] = {}
        self.read = read

    def set(self, value: float, *labels: str) -> None:
        self.values[labels] = value

    def expose(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} gauge"
        if self.read is not None:
            yield f"{self.name} {self.read():g}"
        for labels, value in sorted(self.values.items()):
            yield f"{self.name}{_labels(self.label_names, labels)} {value:g}"


class Histogram:
    def __init__(
        self,
        name: str,
        help_text: str,
        labels: tuple[str, ...] = (),
        buckets: tuple[float, ...] = DEFAULT_BUCKETS,
    ) -> None:
        self.name, self.help, self.label_names = name, help_text, labels
        self.buckets = buckets
        self.series: dict[LabelValues, list[float]] = {}  # bucket counts, then sum, then count

    def observe(self, value: float, *labels: str) -> None:
        series = self.series.get(labels)
        if series is None:
            series = self.series[labels] = [0.0] * (len(self.buckets) + 2)
        index = bisect.bisect_left(self.buckets, value)
        if index < len(self.buckets):
            series[index] += 1
        series[-2] += value
        series[-1] += 1

    def expose(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        for labels, series in sorted(self.series.items()):
            running = 0.0
            for bound, count in zip(self.buckets, series, strict=False):
                running += count
                le = _labels(self.label_names, labels, f'le="{bound:g}"')
                yield f"{self.name}_bucket{le} {running:g}"
            inf = _labels(self.label_names, labels, 'le="+Inf"')
            yield f"{self.name}_bucket{inf} {series[-1]:g}"
            yield f"{self.name}_sum{_labels(self.label_names, labels)} {series[-2]:g}"
            yield f"{self.name}_count{_labels(self.label_names, labels)} {series[-1]:g}"


Metric = Counter | Gauge | Histogram


class Registry:
    def __init__(self) -> None:
        self.metrics: list[Metric] = []

    def counter(self, name: str, help_text: str, labels: tuple[str, ...] = ()) -> Counter:
        """A new counter, or the one of that name already here (same labels).

        Several servers of one tier (the shared front's one listener set per
        namespace) count into one family instead of repeating it.
        """
        for metric in self.metrics:
            if metric.name == name:
                if not isinstance(metric, Counter) or metric.label_names != labels:
                    raise ValueError(f"metric {name} exists with another type or labels")
                return metric
        metric = Counter(name, help_text, labels)
        self.metrics.append(metric)
        return metric

    def gauge(
        self,
        name: str,
        help_text: str,
        labels: tuple[str, ...] = (),
        read: Callable[[], float] | None = None,
    ) -> Gauge:
        metric = Gauge(name, help_text, labels, read)
        self.metrics.append(metric)
        return metric

    def histogram(
        self,
        name: str,
        help_text: str,
        labels: tuple[str, ...] = (),
        buckets: tuple[float, ...] = DEFAULT_BUCKETS,
    ) -> Histogram:
        metric = Histogram(name, help_text, labels, buckets)
        self.metrics.append(metric)
        return metric

    def render(self) -> bytes:
        lines: list[str] = []
        for metric in self.metrics:
            lines.extend(metric.expose())
        return ("\n".join(lines) + "\n").encode()
