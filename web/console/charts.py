"""Charts drawn by the server as inline SVG: bars computed here, drawn by templates/console/_bars.svg.

No script and no chart library: a chart is a list of bars with their geometry, a colour class from
the stylesheet (the outcome), and a ``<title>`` each (what a pointer or a screen reader reads).
Every chart also carries a one-sentence summary as its accessible name, and the page shows the
same numbers in a table, so nothing is only a picture.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from store.overview import RunActivity, RunView

WIDTH = 600
HEIGHT = 120
GAP = 2
RUN_SLOTS = 30
"""An integration's chart has a place for each of its last 30 runs, the newest on the right, however few it has."""


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    kind: str  # a CSS class: ok, failed, held, skipped, running
    title: str


@dataclass(frozen=True)
class Chart:
    label: str  # the accessible name: one sentence with the numbers that matter
    bars: list[Bar]
    texts: list[tuple[float, float, str]] = field(default_factory=list)  # x, y, words drawn beside the bars
    width: int = WIDTH
    height: int = HEIGHT


def kind(outcome: str | None, finished: bool = True) -> str:
    """The colour of an outcome: ok green, held amber, skipped grey, running blue, anything else a failure."""
    if not finished or outcome is None:
        return "running"
    if outcome == "ok":
        return "ok"
    if outcome == "held":
        return "held"
    if outcome.startswith("skipped"):
        return "skipped"
    return "failed"


def _columns(values: list[float], kinds: list[str], titles: list[str], height: int, slots: int = 0) -> list[Bar]:
    """One bar per value, left to right; with ``slots``, that many places and the bars in the rightmost ones."""
    slot = WIDTH / max(slots, len(values), 1)
    first = max(slots - len(values), 0)
    top = max(values, default=0) or 1
    bars = []
    for index, (value, colour, title) in enumerate(zip(values, kinds, titles, strict=True)):
        tall = max(1.0, value / top * (height - 4)) if value else 1.0
        bars.append(
            Bar(
                round((first + index) * slot + GAP / 2, 1),
                round(height - tall, 1),
                round(slot - GAP, 1),
                round(tall, 1),
                colour,
                title,
            )
        )
    return bars


def run_charts(runs: list[RunView]) -> tuple[Chart, Chart]:
    """An integration's runs (oldest on the left): seconds each took, and rows each wrote, coloured by outcome."""
    ordered = sorted(runs, key=lambda run: run.id)
    seconds = [
        (run.finished_at - run.started_at).total_seconds() if run.finished_at is not None else 0.0 for run in ordered
    ]
    kinds = [kind(run.outcome, run.finished_at is not None) for run in ordered]
    titles = [
        f"run {run.id}: {run.outcome or 'running'}, {spent:.1f} s, {run.rows_written} rows written"
        for run, spent in zip(ordered, seconds, strict=True)
    ]
    tally = Counter(kinds)
    outcomes = ", ".join(
        f"{tally[name]} {name}" for name in ("ok", "failed", "held", "skipped", "running") if tally[name]
    )
    longest = max(seconds, default=0.0)
    most = max((run.rows_written for run in ordered), default=0)
    duration_chart = Chart(
        f"Duration of the last {len(ordered)} runs ({outcomes or 'none'}); the longest took {longest:.1f} s.",
        _columns(seconds, kinds, titles, HEIGHT, RUN_SLOTS),
    )
    rows_chart = Chart(
        f"Rows written by the last {len(ordered)} runs; the most was {most}.",
        _columns([float(run.rows_written) for run in ordered], kinds, titles, HEIGHT, RUN_SLOTS),
    )
    return duration_chart, rows_chart


def hourly(activity: list[RunActivity], now: datetime, hours: int = 24) -> tuple[Chart, list[tuple[str, int, int]]]:
    """Syncs started per hour over the last ``hours`` (failed ones drawn over the others), and the same as rows."""
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours - 1)
    total = [0] * hours
    failed = [0] * hours
    for run in activity:
        slot = int((run.started_at - start).total_seconds() // 3600)
        if 0 <= slot < hours:
            total[slot] += 1
            failed[slot] += kind(run.outcome) == "failed"
    labels = [(start + timedelta(hours=slot)).strftime("%H:00") for slot in range(hours)]
    titles = [f"{labels[slot]} UTC: {total[slot]} syncs, {failed[slot]} failed" for slot in range(hours)]
    bars = _columns([float(n) for n in total], ["ok"] * hours, titles, HEIGHT)
    top = max(total, default=0) or 1
    for slot, count in enumerate(failed):
        if count:
            tall = count / top * (HEIGHT - 4)
            base = bars[slot]
            bars.append(Bar(base.x, round(HEIGHT - tall, 1), base.width, round(tall, 1), "failed", titles[slot]))
    slot_width = WIDTH / hours
    axis = [(round(slot * slot_width + 2, 1), HEIGHT + 14.0, labels[slot]) for slot in range(0, hours, 6)]
    label = f"Syncs per hour over the last {hours} hours: {sum(total)} in all, {sum(failed)} failed."
    rows = [(labels[slot], total[slot], failed[slot]) for slot in range(hours)]
    return Chart(label, bars, axis, height=HEIGHT + 20), rows


def failures_by_provider(activity: list[RunActivity], providers: list[str]) -> tuple[Chart, list[tuple[str, int, int]]]:
    """Per provider over the period: a bar as long as its syncs, the failed share of it drawn red from the left."""
    total = Counter(run.provider for run in activity)
    failed = Counter(run.provider for run in activity if kind(run.outcome) == "failed")
    names = sorted(set(providers) | set(total))
    row_height, label_width = 24, 150
    room = WIDTH - label_width - 10
    top = max(total.values(), default=0) or 1
    bars: list[Bar] = []
    for index, name in enumerate(names):
        title = f"{name}: {failed[name]} failed of {total[name]} syncs"
        y = index * row_height + 4
        bars.append(Bar(label_width, y, max(1.0, round(total[name] / top * room, 1)), row_height - 8, "ok", title))
        if failed[name]:
            bars.append(
                Bar(label_width, y, max(1.0, round(failed[name] / top * room, 1)), row_height - 8, "failed", title)
            )
    label = "Failed syncs per provider over the last day: " + (
        ", ".join(f"{name} {failed[name]} of {total[name]}" for name in names) or "no provider"
    )
    texts = [
        (0.0, index * row_height + 17.0, f"{name}: {failed[name]} of {total[name]}") for index, name in enumerate(names)
    ]
    chart = Chart(label, bars, texts, height=max(row_height * len(names), row_height))
    return chart, [(name, total[name], failed[name]) for name in names]
