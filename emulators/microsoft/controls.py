"""The Microsoft emulator's test controls: consent, sessions, sign-in blocks, Graph refusals, changes."""

from __future__ import annotations

import time
from collections.abc import Iterable

from emulators.microsoft.api import MicrosoftApi
from emulators.microsoft.data import (
    _AADSTS,
    _DEFAULT_SUBERROR,
    CORRUPTIONS,
    _Corruption,
)


class MicrosoftEmulator(MicrosoftApi):
    """Entra ID and Graph Education for ``tenants`` synthetic school tenants."""

    # ------------------------------------------------------------------------------- controls
    def set_signin_user(self, user_id: str | None) -> None:
        """Who signs in at the next ``/authorize`` (None: the first teacher of the first tenant)."""
        with self._lock:
            if user_id is not None and user_id not in self._users:
                raise KeyError(f"unknown user {user_id}")
            self._signin_user = user_id

    def withdraw_consent(self, tenant_id: str, *, cae: bool = True) -> None:
        """The tenant admin revokes the app's permissions (providers.md 3.7).

        Delegated refresh then fails with ``invalid_grant`` AADSTS65001 (``consent_required``); client
        credentials still succeed but the token carries no ``roles``, so Graph answers 403 [O].
        ``cae`` (default): access tokens already issued are cut short too and answer 401
        ``InvalidAuthenticationToken`` with a claims challenge, as continuous access evaluation does;
        without it they keep working until they expire, as without CAE.
        """
        with self._lock:
            tenant = self._tenants[tenant_id]
            tenant.delegated_consent = set()
            tenant.app_roles = set()
            if cae:
                self._cut_access(lambda a: a.tenant_id == tenant_id)

    def grant_consent(
        self, tenant_id: str, *, delegated: Iterable[str] = ("EduRoster.ReadBasic",), application: Iterable[str] = ()
    ) -> None:
        """Set what the tenant admin has consented to; fewer permissions than the app needs is a valid state."""
        with self._lock:
            tenant = self._tenants[tenant_id]
            tenant.delegated_consent = set(delegated)
            tenant.app_roles = set(application)

    def revoke_sessions(self, user_id: str) -> None:
        """``POST /users/{id}/revokeSignInSessions``: the user's refresh tokens fail with AADSTS50173 and
        their access tokens answer 401 (CAE)."""
        with self._lock:
            user = self._users[user_id]
            self._sessions_revoked[user.id] = time.time()
            self._grants.revoke_user(user.id)
            self._cut_access(lambda a: a.user_id == user.id)

    def disable_app(self, tenant_id: str) -> None:
        """Enterprise app "enabled for users to sign in" = No: every grant fails with AADSTS7000112."""
        with self._lock:
            self._tenants[tenant_id].app_enabled = False
            self._cut_access(lambda a: a.tenant_id == tenant_id)

    def enable_app(self, tenant_id: str) -> None:
        """The tenant admin turns sign-in to the enterprise app back on: grants are issued again."""
        with self._lock:
            self._tenants[tenant_id].app_enabled = True

    def delete_service_principal(self, tenant_id: str) -> None:
        """The tenant deletes the app: every grant fails with AADSTS700016."""
        with self._lock:
            self._tenants[tenant_id].service_principal = False
            self._cut_access(lambda a: a.tenant_id == tenant_id)

    def expire_client_secret(self) -> None:
        """Our own secret expired: AADSTS7000222 (an operator error, not a revocation)."""
        with self._lock:
            self._secret_expired = True

    def expire_access_tokens(self) -> None:
        """Every access token issued so far is past its lifetime (401 on Graph, refresh needed)."""
        with self._lock:
            for access in self._access.values():
                access.expires_at = 0.0

    def expire_refresh_tokens(self, user_id: str) -> None:
        """90 days of inactivity: AADSTS700082 on the next refresh."""
        with self._lock:
            for grant in self._grants.of_user(user_id):
                grant.issued_at = 0.0  # last used at the epoch: idle past REFRESH_IDLE_SECONDS

    def block_signin(self, principal: str, code: int, *, suberror: str | None = None) -> None:
        """Entra refuses every token request of a user, or of every user and the app in a tenant, with an
        AADSTS ``code`` (53003 Conditional Access, 50076 MFA, ...) and ``suberror`` (the code's usual one
        when None; ``""`` for none). Tokens already issued keep working until they expire, as without CAE.
        """
        with self._lock:
            if principal not in self._users and principal not in self._tenants:
                raise KeyError(f"unknown user or tenant {principal}")
            if code not in _AADSTS:
                raise ValueError(f"no text for AADSTS{code}")
            self._signin_blocks[principal] = (code, _DEFAULT_SUBERROR.get(code) if suberror is None else suberror)

    def unblock_signin(self, principal: str) -> None:
        """The school lifted the policy: token requests of ``principal`` are answered again."""
        with self._lock:
            self._signin_blocks.pop(principal, None)

    def deny_graph(self, tenant_id: str, kind: str) -> None:
        """Graph answers 403 to every read of the tenant's tokens: ``scope`` ("Required scp/roles claim values
        are not provided." [O]), ``licence`` (a bare ``Forbidden`` [O], as for a missing Education licence) or
        ``ca`` (403 with an ``insufficient_claims`` challenge, learn.microsoft.com/graph/errors)."""
        if kind not in ("scope", "licence", "ca"):
            raise ValueError("deny_graph kind is scope, licence or ca")
        with self._lock:
            self._graph_denials[self._tenants[tenant_id].id] = kind

    def allow_graph(self, tenant_id: str) -> None:
        with self._lock:
            self._graph_denials.pop(tenant_id, None)

    def force_claims_challenge(self, principal: str, *, on: bool = True) -> None:
        """Graph answers every call of a user's (or a tenant's) tokens with a 401 claims challenge, whatever
        the client declared: the unexpected challenge of a policy that wants an interactive step."""
        with self._lock:
            if on:
                self._forced_challenges.add(principal)
            else:
                self._forced_challenges.discard(principal)

    def expire_delta_tokens(self, tenant_id: str, *, status: int = 400) -> None:
        """Every delta link issued so far for the tenant expires: 400 ``syncStateNotFound`` (the 7-day expiry)
        or 410 ``resyncRequired`` with a ``Location`` (a synchronization reset; providers.md 3.3)."""
        if status not in (400, 410):
            raise ValueError("delta expiry is answered 400 or 410")
        with self._lock:
            tenant = self._tenants[tenant_id]
            tenant.delta_epoch = time.time() + 0.001
            tenant.delta_expiry_status = status
        time.sleep(0.002)

    def add_student(self, class_id: str) -> str:
        """A new student joins a class: visible in users delta and (membership) in class delta."""
        with self._lock:
            klass = self._classes[class_id]
            tenant = self._tenants[klass.tenant_id]
            user = self._add_user(tenant, tenant.source.new_person(is_teacher=False))
            klass.members.append(user.id)
            klass.changed = self._tick()
            return user.id

    def add_member(self, class_id: str, user_id: str) -> None:
        with self._lock:
            klass = self._classes[class_id]
            if user_id not in klass.members:
                klass.members.append(user_id)
                if self._users[user_id].role == "teacher":
                    klass.teachers.append(user_id)
                klass.changed = self._tick()

    def remove_member(self, class_id: str, user_id: str) -> None:
        with self._lock:
            klass = self._classes[class_id]
            if user_id not in klass.members:
                raise KeyError(f"user {user_id} is not a member of class {class_id}")
            klass.members.remove(user_id)
            if user_id in klass.teachers:
                klass.teachers.remove(user_id)
            klass.changed = self._tick()

    def rename_user(self, user_id: str) -> None:
        """New names for a person (the old ones stay in personal_strings); visible in users delta."""
        with self._lock:
            user = self._users[user_id]
            self._past_strings |= self._strings_of(user)
            self._tenants[user.tenant_id].source.rename(user.person.id)
            user.pii["mail"] = user.person.email
            user.changed = self._tick()

    def rename_class(self, class_id: str, name: str) -> None:
        with self._lock:
            klass = self._classes[class_id]
            klass.display_name = name
            klass.changed = self._tick()

    def sds_expire(self, tenant_id: str, *, tag: str = "Exp0626", remove_students: bool = False) -> list[str]:
        """School Data Sync's year-end clean-up ("expire and archive") of every class of a tenant; returns their ids.

        As Graph shows it: each class stays listed with the same id, its display name, mail nickname and
        SIS id tagged (``Exp0626_...``), so class delta reports it. Archiving the class Team changes
        nothing Graph's education API shows (a Team's archive state is on ``/teams``). SDS does not
        remove students unless asked (``remove_students``, Classic's "Remove Students for Classes").
        """
        with self._lock:
            expired = []
            for klass in self._classes.values():
                if klass.tenant_id != tenant_id or klass.deleted or klass.display_name.startswith(tag):
                    continue
                klass.display_name = f"{tag}_{klass.display_name}"
                for key in ("externalId", "mailNickname"):
                    if isinstance(klass.extra.get(key), str):
                        klass.extra[key] = f"{tag}_{klass.extra[key]}"
                if remove_students:
                    klass.members = [m for m in klass.members if m in klass.teachers]
                klass.changed = self._tick()
                expired.append(klass.id)
            return expired

    def delete_class(self, class_id: str) -> None:
        """The class is deleted: 404 from now on, and (as Graph documents) never reported by class delta."""
        with self._lock:
            self._classes[class_id].deleted = True
            self._classes[class_id].changed = self._tick()  # reported only with ``report_removed_classes``

    def delete_user(self, user_id: str) -> None:
        """The user is deleted: gone from member lists; in users delta only with ``delta_reports_removed``."""
        with self._lock:
            user = self._users[user_id]
            user.deleted = True
            user.changed = self._tick()
            for klass in self._classes.values():
                if user_id in klass.members:
                    user.former_classes.append(klass.id)
                    klass.members.remove(user_id)
                    if user_id in klass.teachers:
                        klass.teachers.remove(user_id)
                    klass.changed = self._tick()

    def recreate_user(self, user_id: str) -> None:
        """A deleted user comes back with the same id and the class memberships it had.

        Entra keeps a deleted user 30 days and restores it in full, same object id (Graph's
        directory-deleteditems-restore); its classes' memberships change, which class delta reports
        ("newly created or updated classes, including membership changes", educationclass-delta),
        and users delta lists the user again, without ``@removed``.
        """
        with self._lock:
            user = self._users[user_id]
            if not user.deleted:
                raise ValueError(f"user {user_id} is not deleted")
            user.deleted = False
            user.changed = self._tick()
            for class_id in dict.fromkeys(user.former_classes):
                klass = self._classes[class_id]
                if user_id not in klass.members:
                    klass.members.append(user_id)
                if user.role == "teacher" and user_id not in klass.teachers:
                    klass.teachers.append(user_id)
                klass.changed = self._tick()
            user.former_classes.clear()

    def recreate_class(self, class_id: str) -> None:
        """A deleted class (a Microsoft 365 group) comes back with the same id, its members and teachers.

        A restored group keeps its id (directory-deleteditems-restore); class delta reports it as
        updated, and its ``members``/``teachers`` answer again.
        """
        with self._lock:
            klass = self._classes[class_id]
            if not klass.deleted:
                raise ValueError(f"class {class_id} is not deleted")
            klass.deleted = False
            klass.changed = self._tick()

    def report_removed_classes(self, report: bool = True) -> None:
        """Class delta reports a deleted class as ``@removed`` (Graph documents that it does not; [U] for
        restores), so the round trip ``@removed`` then present again can be tested."""
        with self._lock:
            self._delta_reports_removed_classes = report

    def set_education(self, tenant_id: str, education: bool = True, *, answer: str = "unsupported_query") -> None:
        """Make a tenant an Education tenant or not. Without education data (no School Data Sync, no
        Education licence) Graph refuses every ``/education`` call with 400: ``unsupported_query`` is
        the ``Request_UnsupportedQuery`` about ``..._Education_ObjectType`` seen on v1.0
        (microsoft-graph-docs#4964); ``segment`` the older "Resource not found for the segment
        'education'" (O365-EDU-Tools#13)."""
        if answer not in ("unsupported_query", "segment"):
            raise ValueError("answer is 'unsupported_query' or 'segment'")
        with self._lock:
            self._tenants[tenant_id].education = "" if education else answer

    def corrupt_next(self, path_contains: str, kind: str, count: int = 1, *, link: str = "", status: int = 200) -> None:
        """The next ``count`` Graph answers whose path contains ``path_contains`` come back broken, the way
        proxies and half-deployed services break them (a ``$batch`` sub-request is matched on its own path):

        ``malformed_json`` (a 200 cut off mid-body), ``html_page`` (an HTML error page with ``status``,
        as a gateway sends), ``missing_value`` (a 200 object without ``value``/``responses``),
        ``next_link_loop`` (``@odata.nextLink`` pointing at the page itself, so a client sees the same
        link twice), ``foreign_next_link`` (``@odata.nextLink``, or the ``@odata.deltaLink`` of a delta
        round's last page, replaced by ``link``, e.g. a URL on another host).
        """
        if kind not in CORRUPTIONS:
            raise ValueError(f"unknown corruption {kind!r}; one of {', '.join(CORRUPTIONS)}")
        if kind == "foreign_next_link" and not link:
            raise ValueError("foreign_next_link needs the link to serve")
        with self._lock:
            self._corruptions.append(_Corruption(path_contains, kind, count, link, status))

    def clear_corruptions(self) -> None:
        """Forget every corruption not yet served (a loop injected for longer than the client followed it)."""
        with self._lock:
            self._corruptions = []
