"""The data inventory a school's privacy officer asks for, generated from what the code runs on.

Nothing here is written by hand: the scopes come from the provider table, the fields on the wire
from the same ``field_mask`` the sync hands the connector, the fields kept from the allowlist
(each provider's ``allowlist``, its mapper's rows), the retention from the settings. Change any of those and the
inventory changes with it, so it cannot drift from what the code does.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from mappers.policy import FieldRule, rules_for
from providers.registry import PROVIDERS, Provider
from settings import Settings
from store import audit, integrations
from store.models import Integration
from store.roster import counts
from store.runtime import Runtime

SUBJECT = "subject"
"""The canonical name under which the allowlist reads a provider's user id: only to pseudonymise it."""


def _short(scope: str) -> str:
    return scope.rsplit("/", 1)[-1]


def _kept(rule: FieldRule) -> dict[str, Any]:
    source = ".".join(rule.path)
    if rule.canonical == SUBJECT:
        entry: dict[str, Any] = {"field": "pseudonym", "from": f"HMAC-SHA256({source})", "stored": "pseudonym only"}
    else:
        entry = {"field": rule.canonical, "from": source, "stored": "as sent"}
    entry["only_with_scope"] = _short(rule.requires_scope) if rule.requires_scope else None
    return entry


def _optional_scopes(spec: Provider) -> list[str]:
    return sorted({rule.requires_scope for rules in spec.allowlist.values() for rule in rules if rule.requires_scope})


def _no_field_selection(spec: Provider) -> str:
    """What the wire carries where the provider offers no field selection: whole records of chosen endpoints."""
    chosen = f" ({spec.whole_records})" if spec.whole_records else ""
    return (
        f"no field selection at this provider: whole records of the endpoints the sync chooses{chosen}; "
        "only the fields below are kept"
    )


def _roles(spec: Provider, granted: frozenset[str], everything: frozenset[str] | None) -> dict[str, Any]:
    roles: dict[str, Any] = {}
    kept_under = granted if everything is None else everything
    for role in spec.allowlist:
        entry: dict[str, Any] = {
            "on_the_wire": spec.field_mask(role, granted) or _no_field_selection(spec),
            "kept": [_kept(rule) for rule in rules_for(spec.allowlist, role, kept_under)],
        }
        if everything is not None:
            wider = spec.field_mask(role, everything) or _no_field_selection(spec)
            entry["on_the_wire_with_optional_scopes"] = wider if wider != entry["on_the_wire"] else None
        roles[role] = entry
    return roles


def retention(settings: Settings) -> dict[str, str]:
    grace = settings.revoked_grace_seconds
    return {
        "ended_integrations": "roster and tokens deleted at the revoke"
        + (f"; anything left removed {grace} s after it" if grace else " (grace 0)"),
        "blocked_integrations": "roster and tokens kept while the school's setting blocks access, then deleted "
        f"like a revoke once blocked {settings.blocked_grace_days} days",
        "rows_the_provider_no_longer_lists": f"hidden at once, deleted after {settings.removed_retention_days} days",
        "deleted_platform_accounts": "everything the account linked deleted "
        f"{settings.deleted_account_retention_months} months after the account's deletion",
        "consents_in_flight": f"deleted after {settings.link_state_ttl_seconds} s",
        "change_feed": f"change_events deleted after {settings.change_feed_retention_days} days; at once, an "
        "erased person's events (but the erase's own) and a purged integration's (but the purge)",
        "audit_log": "kept; ids, counts and pseudonyms only",
    }


PASSED_ON = (
    "to the platform, through the change feed (table change_events, /v1/changes, webhooks): class keys, names, "
    "sections and states; members as pseudonym and role; teachers' display names; integration status; "
    "purges and erasures, so the platform deletes what it was told"
)
"""What leaves rostersync, and how: the feed names only what the stored roster holds."""

PSEUDONYMISATION = (
    "HMAC-SHA256 over 'provider|tenant|user id' under a per-tenant key derived (HKDF-SHA256) from "
    "ROSTERSYNC_PSEUDONYM_KEY; the provider's user id is never stored, for students or teachers"
)


def provider_inventory(settings: Settings, name: str) -> dict[str, Any]:
    """What rostersync asks a provider for and keeps, under the scopes it asks and the optional ones it honours."""
    spec = PROVIDERS[name]
    optional = _optional_scopes(spec)
    return {
        "provider": name,
        "scopes_asked": sorted(_short(scope) for scope in spec.required_scopes),
        "optional_scopes_honoured": [_short(scope) for scope in optional],
        "roles": _roles(spec, spec.required_scopes, spec.required_scopes | frozenset(optional)),
        "pseudonymisation": PSEUDONYMISATION,
        "passed_on": PASSED_ON,
        "retention": retention(settings),
        "consent_basis": "recorded per integration at link time (see `inventory ID`)",
    }


def integration_inventory(runtime: Runtime, integration_id: int) -> dict[str, Any]:
    """The same, for one integration: the scopes it was granted decide the fields."""
    state = integrations.load(runtime.engine, integration_id)
    spec = PROVIDERS[state.provider]
    with runtime.engine.connect() as connection:
        stored = counts(connection, integration_id)
        basis = connection.execute(
            select(Integration.consent_basis).where(Integration.id == integration_id)
        ).scalar_one_or_none()
    return {
        "integration": integration_id,
        "provider": state.provider,
        "tenant": state.tenant,
        "status": state.status,
        "scopes_asked": sorted(_short(scope) for scope in spec.required_scopes),
        "scopes_granted": sorted(_short(scope) for scope in state.granted_scopes),
        "roles": _roles(spec, state.granted_scopes, None),
        "pseudonymisation": PSEUDONYMISATION,
        "passed_on": PASSED_ON,
        "retention": retention(runtime.settings),
        "consent_basis": basis or audit.NOT_RECORDED,
        "stored_now": {"classes": stored.classes, "teachers": stored.teachers, "students": stored.students},
    }


def render(inventory: dict[str, Any]) -> str:
    """Plain text, the same lines `rostersync inventory` prints and docs/privacy.md shows."""
    lines = []
    if "integration" in inventory:
        lines.append(f"integration {inventory['integration']} ({inventory['provider']}, {inventory['status']})")
        lines.append(f"  scopes granted: {', '.join(inventory['scopes_granted'])}")
    else:
        lines.append(f"provider {inventory['provider']}")
        lines.append(f"  scopes asked: {', '.join(inventory['scopes_asked'])}")
        lines.append(f"  optional scopes honoured: {', '.join(inventory['optional_scopes_honoured']) or 'none'}")
    for role, entry in inventory["roles"].items():
        lines.append(f"  {role}")
        lines.append(f"    on the wire: {entry['on_the_wire']}")
        if entry.get("on_the_wire_with_optional_scopes"):
            lines.append(f"    on the wire with optional scopes: {entry['on_the_wire_with_optional_scopes']}")
        for kept in entry["kept"]:
            gate = f" (only with {kept['only_with_scope']})" if kept["only_with_scope"] else ""
            lines.append(f"    kept: {kept['field']} <- {kept['from']}{gate}")
    lines.append(f"  pseudonymisation: {inventory['pseudonymisation']}")
    lines.append(f"  passed on: {inventory['passed_on']}")
    for what, rule in inventory["retention"].items():
        lines.append(f"  retention, {what.replace('_', ' ')}: {rule}")
    lines.append(f"  consent basis: {inventory['consent_basis']}")
    if "stored_now" in inventory:
        stored = inventory["stored_now"]
        lines.append(
            f"  stored now: {stored['classes']} classes, {stored['teachers']} teachers, {stored['students']} students"
        )
    return "\n".join(lines) + "\n"
