"""``/metrics`` (SPEC §10 "Metrics and health"): what ``monitor run`` did and what its
database holds, in Prometheus' text format.

The daemon counts as it works: polls by source and outcome and how long each source's
requests took (a :class:`CycleTally` sees each source's answers while a cycle polls, and
they are counted once the cycle is recorded), deliveries by channel and outcome (the outbox
reports each attempt's outcome), how long cycles take and when the last one ended. What the
database holds (pending deliveries, firing alerts, watches, the rate limits sources keep) is
read when scraped, by :meth:`Metrics.render` on the request's worker thread and connection,
so it is never stale and the daemon keeps no copy of it.

Every metric is on the daemon's own registry, never prometheus-client's global one, and its
name starts with ``monitor_``. Only ``monitor run`` imports this module, so ``monitor --help``
never loads prometheus-client.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from monitor.outbox import Outcome
from monitor.sources import Sources

if TYPE_CHECKING:
    from monitor.app import App
    from monitor.cycle import CycleReport

# What generate_latest writes, labelled as prometheus-client's own handlers label it when the
# scraper asks for nothing newer: the text format every Prometheus reads.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
PRIMARY = "djangopackages"
POLL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
CYCLE_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class PollOutcome(StrEnum):
    """How one source's poll of one package went, as ``monitor_polls_total`` counts it."""

    OK = "ok"  # answered, and nothing it gives changed
    UNCHANGED = "unchanged"  # the source said so (a 304, or the record's fingerprint)
    CHANGED = "changed"  # answered, and a field it gives changed
    FAILED = "failed"
    NOT_FOUND = "not_found"
    DEFERRED = "deferred"  # rate limited: not asked


class Metrics:
    """The daemon's metrics. ``sources`` and ``channels`` are known from the start, so their
    counters are shown (at 0) before anything happens."""

    def __init__(self, sources: Iterable[str] = (), channels: Iterable[str] = ()):
        self.registry = CollectorRegistry()
        self.polls = Counter(
            "monitor_polls",
            "Polls by source and outcome (ok, unchanged, changed, failed, not_found, deferred).",
            ["source", "outcome"],
            registry=self.registry,
        )
        self.poll_seconds = Histogram(
            "monitor_poll_duration_seconds",
            "Seconds one source's requests for one package took, retries included.",
            ["source"],
            buckets=POLL_BUCKETS,
            registry=self.registry,
        )
        self.cycle_seconds = Histogram(
            "monitor_cycle_duration_seconds",
            "Seconds a cycle took: polling every source, recording, queuing deliveries.",
            buckets=CYCLE_BUCKETS,
            registry=self.registry,
        )
        self.deliveries = Counter(
            "monitor_deliveries",
            "Delivery attempts by channel and outcome (delivered, retry, failed).",
            ["channel", "outcome"],
            registry=self.registry,
        )
        self.last_cycle = Gauge(
            "monitor_last_cycle_end_timestamp_seconds",
            "When the last cycle ended (Unix seconds; 0 before the first).",
            registry=self.registry,
        )
        for source in sources:
            for poll in PollOutcome:
                self.polls.labels(source, poll.value)
            self.poll_seconds.labels(source)
        for channel in channels:
            for outcome in Outcome:
                self.deliveries.labels(channel, outcome.value)

    def count_cycle(
        self, tally: CycleTally, report: CycleReport, *, seconds: float, ended: float
    ) -> None:
        """Count a recorded cycle's polls, and its length and end (``time.time()``)."""
        for source, outcome, duration in tally.outcomes(report):
            self.polls.labels(source, outcome.value).inc()
            if outcome is not PollOutcome.DEFERRED:  # nothing was asked
                self.poll_seconds.labels(source).observe(duration)
        self.cycle_seconds.observe(seconds)
        self.last_cycle.set(ended)

    def count_delivery(self, channel: str, outcome: str) -> None:
        """One delivery attempt's outcome (the outbox calls this)."""
        self.deliveries.labels(channel, outcome).inc()

    def render(self, app: App) -> bytes:
        """The exposition text: the daemon's counters, and what ``app``'s database holds
        now. Reads the database: run it where ``app``'s connection lives."""
        return generate_latest(_Scrape(self.registry, app))


class CycleTally:
    """One cycle's answers, source by source, as they are given: the daemon polls through
    :meth:`observing` and, once the cycle is recorded, its outcomes are counted
    (:meth:`outcomes`) against what the cycle found changed."""

    def __init__(self) -> None:
        # (source, package, status, seconds) per answer: not the answers themselves, which
        # hold whole records (a cycle records them a batch at a time, and lets them go)
        self.answers: list[tuple[str, str, str, float]] = []

    def observing(self, sources: Sources) -> Sources:
        """``sources``, each of which notes its answers here as it gives them."""
        return Sources(
            _ObservedPrimary(sources.djangopackages, self.answers),
            [_Observed(source, self.answers) for source in sources.others],
        )

    def outcomes(self, report: CycleReport) -> Iterator[tuple[str, PollOutcome, float]]:
        """(source, outcome, seconds) per answer."""
        changed = changed_sources(report)
        for source, package, status, duration in self.answers:
            touched = source in changed.get(package, ())
            yield source, outcome(status, touched), duration


def outcome(status: str, changed: bool) -> PollOutcome:
    """A poll's outcome from its status (``PollStatus`` or ``PartStatus``): an ``ok`` answer
    whose source gave a changed field is ``changed``."""
    polled = PollOutcome(status)
    if polled is PollOutcome.OK and changed:
        return PollOutcome.CHANGED
    return polled


def changed_sources(report: CycleReport) -> dict[str, set[str]]:
    """package -> the sources whose fields changed in this cycle."""
    from monitor.fields import source_of

    origin = source_of()
    return {
        slug: {origin.get(change.field, "") for change in changes}
        for slug, changes in report.changed
    }


class _Observed:
    """A source whose ``poll`` also notes its answers (parts) in ``seen``; anything else is
    the source's own."""

    def __init__(self, source: Any, seen: list[tuple[str, str, str, float]]):
        self._source = source
        self._seen = seen

    def __getattr__(self, name: str) -> Any:
        return getattr(self._source, name)

    async def poll(self, *args: Any, **kwargs: Any) -> Sequence[Any]:
        answers = await self._source.poll(*args, **kwargs)
        self._seen += ((p.source, p.watch, str(p.status), p.duration) for p in answers)
        return answers  # type: ignore[no-any-return]


class _ObservedPrimary(_Observed):
    """djangopackages, whose ``poll`` tells each result as it comes (``on_result``)."""

    async def poll(self, *args: Any, **kwargs: Any) -> Sequence[Any]:
        told = kwargs.pop("on_result", None)

        def note(result: Any) -> None:
            self._seen.append((PRIMARY, result.slug, str(result.status), result.duration))
            if told is not None:
                told(result)

        return await self._source.poll(*args, on_result=note, **kwargs)  # type: ignore[no-any-return]


class _Scrape:
    """What one scrape collects: the daemon's registry, then the database's gauges."""

    def __init__(self, registry: CollectorRegistry, app: App):
        self.registry = registry
        self.app = app

    def collect(self) -> Iterator[Metric]:
        yield from self.registry.collect()
        gauges = self.app.gauges()
        yield _gauge(
            "monitor_outbox_pending",
            "Delivery groups waiting to be sent (or retried).",
            gauges["outbox_pending"],
        )
        firing = GaugeMetricFamily(
            "monitor_alerts_firing",
            "Condition alerts firing now on watched packages, muted ones included, by severity.",
            labels=["severity"],
        )
        for severity, count in gauges["firing"].items():
            firing.add_metric([severity], count)
        yield firing
        yield _gauge("monitor_watches", "Packages watched.", gauges["watches"])
        limited = GaugeMetricFamily(
            "monitor_rate_limited_until_timestamp_seconds",
            "When a source's rate limit ends (Unix seconds; 0 when it keeps none).",
            labels=["source"],
        )
        for source, until in gauges["rate_limited_until"].items():
            limited.add_metric([source], until or 0)
        yield limited


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)
