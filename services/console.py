"""Where people read: stderr for progress, narration and errors; stdout only for results (and --json).

Imported by a command when it has something to draw or say (Rich costs a tenth of ``status``'s start); how
the command line logs is set in cli.app, which does not need it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:
    from rich.progress import TaskID

    from sync.progress import ProgressEvent

err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)


@contextmanager
def sync_progress() -> Iterator[None]:
    """A bar per integration, fed by the sync's progress events (the in-process worker runs here).

    Rich's progress bars are imported here, by the commands that sync: ``status`` prints without them."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from sync.progress import listening

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
