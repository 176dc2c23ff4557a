"""Which classes a fresh link will sync: one read of the teacher's class list, for the page they land on.

Read-only and fenced like a sync's token store: nothing is written but rotated tokens. The names
go to the teacher's own browser, never to a log.
"""

from __future__ import annotations

from connectors.base import ConnectorError, TokenSet
from mappers.policy import MappingContext
from providers.registry import provider, tokens_from_payload, tokens_to_payload
from store import integrations
from store.runtime import Runtime
from store.vault import VaultError
from sync.consent import roles_to_sync

MAX_PAGES = 3


def class_names(runtime: Runtime, integration_id: int) -> list[str] | None:
    """Names (with section) of the classes the integration will sync; None when the provider cannot tell now."""
    state = integrations.load(runtime.engine, integration_id)
    if state.token_blob is None or state.status != "active":
        return None
    spec = provider(state.provider)

    def persist(tokens: TokenSet) -> None:
        sealed = runtime.vault.seal(tokens_to_payload(tokens))
        integrations.store_tokens(runtime.engine, state.id, state.generation, sealed)

    names: list[str] = []
    try:
        tokens = tokens_from_payload(runtime.vault.open(state.token_blob))
        connector = spec.connector(runtime.settings, tokens, persist)
        context = MappingContext(state.tenant, state.granted_scopes, runtime.pseudonymiser)
        # Every role the consent basis allows gets its mask, as in a sync: a provider that reads a class's
        # teachers with its classes needs the teacher mask too; members returned inline are not shown.
        roles = ("class", *roles_to_sync(state.consent_basis))
        masks = {role: spec.field_mask(role, state.granted_scopes) for role in roles}
        try:
            for number, page in enumerate(connector.classes(masks)):
                batch = spec.map_page(page, context)
                names.extend(f"{r.name} ({r.section})" if r.section else r.name for r in batch.classes)
                if number + 1 >= MAX_PAGES:
                    break
        finally:
            connector.close()
    except (ConnectorError, VaultError, KeyError, ValueError):
        return None
    except Exception:
        return None
    return names
