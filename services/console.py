"""Where people read: stderr for progress, narration and errors; stdout only for results (and --json)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from sync.progress import ProgressEvent, listening

err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)


def configure_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("rostersync").setLevel(logging.INFO if verbose else logging.WARNING)
    # The in-process worker's own failure logs carry tracebacks; the command reports each sync's
    # outcome in one line of its own instead (sync.outcomes). -v shows them.
    logging.getLogger("dramatiq").setLevel(logging.WARNING if verbose else logging.CRITICAL)


@contextmanager
def sync_progress() -> Iterator[None]:
    """A bar per integration, fed by the sync's progress events (the in-process worker runs here)."""
    progress = Progress(
        TextColumn("[bold]sync[/] integration {task.fields[integration]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("classes"),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )
    tasks: dict[int, TaskID] = {}

    def on_event(event: ProgressEvent) -> None:
        task = tasks.get(event.integration_id)
        if task is None:
            task = progress.add_task("sync", total=None, integration=event.integration_id)
            tasks[event.integration_id] = task
        progress.update(task, total=event.total, completed=event.done)

    with progress, listening(on_event):
        yield
