"""``watch -r FILE`` (SPEC §4, "Dependency files"): watch what a project depends on.

The steps, each its own module: read the file (:mod:`monitor.deps`, no network), map each
PyPI name to a watch (:mod:`monitor.resolve`: a djangopackages slug or ``pypi:NAME``; a name
already watched costs no request), poll the new watches' other sources for their baselines
(the cycle's :func:`~monitor.cycle.poll_parts`), then one transaction: new watches with
their pins and the file as their origin, pins of those already watched brought up to date,
what left the file unwatched with ``prune``, the baselines recorded (condition rules
evaluated, as ``watch`` does). A failure before the transaction stores nothing.

Pins: the file's ``==`` pin (or locked version) is the watch's pin. A requirement without
one clears the pin of a watch that came from this file (the file is the truth for it) and
keeps the pin of a watch added otherwise. A watch added by name and found in the file
takes the file as its origin; one that came from another file keeps its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from monitor.deps import DependencyFile
from monitor.names import is_pypi_watch, project_of, pypi_watch
from monitor.report import option_change
from monitor.store import KEEP, Store

ADDED, UPDATED, UNCHANGED, SKIPPED, REMOVED, LEFT = (
    "added",
    "updated",
    "unchanged",
    "skipped",
    "removed",
    "no longer in the file",
)


@dataclass(frozen=True)
class Row:
    """What happened to one requirement (or, for ``removed`` and ``left``, one watch that
    came from the file and is no longer in it)."""

    requirement: str | None
    where: str | None
    watch: str | None
    pinned: str | None
    action: str
    reason: str | None = None

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "requirement": self.requirement,
            "where": self.where,
            "watch": self.watch,
            "pinned": self.pinned,
            "action": self.action,
            "reason": self.reason,
        }


@dataclass
class Imported:
    rows: list[Row] = field(default_factory=list)
    report: Any = None  # the baselines' CycleReport
    failed: bool = False  # a name could not be resolved because a request failed
    undelivered: list[str] = field(default_factory=list)  # set by the CLI after delivery

    def count(self, action: str) -> int:
        return sum(1 for row in self.rows if row.action == action)


async def import_file(
    store: Store,
    config: Any,
    rules: Sequence[Any],
    sources: Any,
    deps: DependencyFile,
    *,
    origin: str,
    prune: bool,
    notify: list[str] | None,
    interval: str | None,
    now: datetime,
    rng: Callable[[], float],
    on_progress: Callable[[int, int], None] | None = None,
) -> Imported:
    from monitor.cycle import CycleRecorder, poll_parts, without_record
    from monitor.resolve import resolve

    pypi = next((s for s in sources.others if s.name == "pypi"), None)
    watches = store.watches(store.watched_slugs())
    by_project = _watched_projects(store, watches)
    known: dict[str, str] = {}  # PyPI name -> the watch it is, without asking anyone
    for wanted in deps.wanted:
        watch = by_project.get(wanted.name)
        if watch is None and pypi_watch(wanted.name) in watches:
            watch = pypi_watch(wanted.name)
        if watch is None and wanted.name in watches:
            watch = wanted.name
        if watch is not None:
            known[wanted.name] = watch
    unknown = [w.name for w in deps.wanted if w.name not in known]
    resolved = await resolve(
        unknown,
        sources.djangopackages,
        pypi,
        concurrency=config.djangopackages.concurrency,
        on_progress=on_progress,
        elsewhere={watch: project for project, watch in by_project.items()},
    )

    imported = Imported()
    for skipped in deps.skipped:  # what the file itself says cannot be watched
        imported.rows.append(
            Row(skipped.requirement, skipped.where, None, None, SKIPPED, skipped.reason)
        )
    plan: list[tuple[Any, str, bool]] = []  # (wanted, watch name, new)
    new_results: dict[str, Any] = {}
    pins: dict[str, str | None] = {}
    for wanted in deps.wanted:
        target = known.get(wanted.name)
        if target is None:
            answer = resolved[wanted.name]
            if answer.watch is None:
                imported.failed |= answer.how == "failed"
                reason = answer.error or "not on djangopackages or PyPI (a private package?)"
                imported.rows.append(
                    Row(wanted.requirement, wanted.where, None, wanted.pinned, SKIPPED, reason)
                )
                continue
            target = answer.watch
            if target not in watches and target not in new_results:
                new_results[target] = (
                    answer.result if answer.result is not None else without_record(target)
                )
                pins[target] = wanted.pinned
        plan.append((wanted, target, target in new_results))

    recorder = CycleRecorder(store, config, rules, now=now, rng=rng)
    recorder.pins = pins
    polled = await poll_parts(recorder, list(new_results.values()), sources.others)
    gone = {r.slug for r in polled if is_pypi_watch(r.slug) and not _on_pypi(r)}
    polled = [r for r in polled if r.slug not in gone]
    recorder.render_baselines(polled)  # user templates run before the write lock is taken

    in_file = {target for _, target, _ in plan}
    with store.transaction():
        done: set[str] = set()
        for wanted, target, new in plan:
            if target in gone:
                imported.rows.append(
                    Row(
                        wanted.requirement,
                        wanted.where,
                        target,
                        wanted.pinned,
                        SKIPPED,
                        "PyPI does not answer for it now",
                    )
                )
                continue
            if target in done:  # two names of one package (a typo's alias): told once
                continue
            done.add(target)
            if new:
                result = new_results[target]
                store.upsert_watch(
                    target,
                    package_id=result.package_id,
                    title=result.snapshot.title if result.snapshot else project_of(target),
                    notify=notify,
                    interval=interval,
                    now=now,
                    pinned=wanted.pinned,
                    origin=origin,
                )
                imported.rows.append(
                    Row(wanted.requirement, wanted.where, target, wanted.pinned, ADDED)
                )
                continue
            imported.rows.append(_update(store, wanted, target, origin, notify, interval))
        for target, pinned in store.watches_from(origin).items():
            if target in in_file:
                continue
            if prune:
                store.unwatch(target)
                imported.rows.append(Row(None, None, target, pinned, REMOVED))
            else:
                imported.rows.append(
                    Row(None, None, target, pinned, LEFT, "kept; --prune unwatches it")
                )
        imported.report = recorder.record(polled, baseline=True)
    return imported


def _update(
    store: Store,
    wanted: Any,
    target: str,
    origin: str,
    notify: list[str] | None,
    interval: str | None,
) -> Row:
    """Bring a watched package up to date with its requirement (see the module's pins)."""
    current_pin, current_origin = store.pin_and_origin(target)
    ours = current_origin == origin
    pinned = wanted.pinned if wanted.pinned is not None else (None if ours else KEEP)
    changed = store.set_watch_options(
        target,
        notify=notify,
        interval=interval,
        pinned=pinned,
        origin=origin if current_origin is None else KEEP,
    )
    now_pinned = pinned if isinstance(pinned, str) or pinned is None else current_pin
    if not changed:
        return Row(wanted.requirement, wanted.where, target, now_pinned, UNCHANGED)
    what = ", ".join(option_change(name, *values) for name, values in changed.items())
    return Row(wanted.requirement, wanted.where, target, now_pinned, UPDATED, what)


def _watched_projects(store: Store, watches: dict[str, Any]) -> dict[str, str]:
    """PyPI project -> the watch polled under it (its PyPI key), for the watched ones."""
    keys = store.part_keys(w.id for w in watches.values())
    by_id = {w.id: slug for slug, w in watches.items()}
    return {
        sources["pypi"]: by_id[watch_id]
        for watch_id, sources in keys.items()
        if "pypi" in sources and watch_id in by_id
    }


def _on_pypi(result: Any) -> bool:
    from monitor.sources import PartStatus

    part = result.parts.get("pypi")
    return part is not None and part.status not in (PartStatus.NOT_FOUND, PartStatus.FAILED)
