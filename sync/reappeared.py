"""People a change feed says are back with an id the provider deleted before: their classes are re-read.

A provider may ask an app to restore records when a deleted id reappears (the citation is in the
provider's glue module and docs/reliability.md). Its "created" event carries the person, not their
classes, and their ``users.deleted`` already ended their enrolments here; so without a re-read a
teacher would come back with no class until the next full listing. The mapper flags the ids
(``ChangeBatch.reappeared``), the store tells which of them it holds as removed, and only those cost
a request: the provider row's ``classes_of``, metered by the request budget like every listing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

from sqlalchemy import Engine

from connectors.base import Page, RosterConnector
from mappers.policy import MappingContext
from mappers.records import ChangeBatch, RosterBatch
from providers.registry import Provider
from store import roster
from store.fence import read_options
from sync.budgets import fetch


def restore(
    engine: Engine,
    integration_id: int,
    spec: Provider,
    connector: RosterConnector,
    context: MappingContext,
    batch: ChangeBatch,
) -> None:
    """Add to ``batch`` the current classes of each reappeared person the store holds as removed.

    Each class comes whole (all its members), so it joins ``replaced_classes``; a class the page itself
    replaces or deletes is left to the page's own event. Run before the page is applied, so that the
    page's writes and the restore commit together.
    """
    if not batch.reappeared or spec.classes_of is None:
        return
    classes_of = spec.classes_of
    keys = {(person.role, person.pseudonym) for person in batch.reappeared}
    # An unlocked read (store.fence.read_options): it only advises which classes to re-read; the page's write is fenced.
    with engine.connect().execution_options(**read_options(engine)) as connection:
        archived = roster.archived_people(connection, integration_id, keys)
    for person in batch.reappeared:
        if (person.role, person.pseudonym) not in archived:
            continue  # new, or never removed here: the feed's sections events carry their enrolments
        for page in fetch(connector, functools.partial(_read, classes_of, person.subject)):
            _merge(batch, spec.map_page(page, context))


def _read(
    classes_of: Callable[[RosterConnector, str], Iterator[Page]], subject: str, connector: RosterConnector
) -> Iterator[Page]:
    return classes_of(connector, subject)


def _merge(batch: ChangeBatch, classes: RosterBatch) -> None:
    """The re-read classes into the page's batch, as whole classes that replace what is stored of them."""
    taken = set(batch.replaced_classes) | set(batch.deleted_classes)
    for cls in classes.classes:
        if cls.external_id in taken:
            continue
        taken.add(cls.external_id)
        batch.replaced_classes.append(cls.external_id)
        batch.upserts.classes.append(cls)
        members = [e for e in classes.enrollments if e.class_external_id == cls.external_id]
        batch.upserts.enrollments += members
        named = {(e.role, e.pseudonym) for e in members}
        batch.upserts.people += [p for p in classes.people if (p.role, p.pseudonym) in named]
    batch.upserts.skipped += classes.skipped
