"""Local stand-in for Clever (OAuth, the v3.0/v3.1 Data API and the Events API), served over HTTPS.

Clever carries the most sensitive roster records of our providers (date of birth, race, ethnicity,
English-learner status, home address, district usernames, free-form ``ext``; v3.1 adds disability,
IEP, 504 and free-lunch status). Minimisation can only be tested against records that really carry
all of that, so every record here holds every property of the published definitions
(``shared/specs/clever-v3.*.yml``), filled with distinctive synthetic canary values, plus one field
no definition names yet. The behaviour a connector depends on follows providers.md section 2:
list wrappers with relative ``links``, ascending ids, ``limit`` over 10,000 answered 413, district
tokens listable, rotatable and removed on disconnect, SSO tokens refused outside their few
endpoints, events with ``previous_attributes`` in a 30-day window, unsharing (404 plus a
``*.deleted`` event), and 429 with an empty body and ``X-RateLimit-Reset`` instead of Retry-After.

Where providers.md marks a behaviour as unconfirmed ([U]) the choice made here is named in the
docstring of the code that makes it, so a test failing against the real Clever points at it.

One layer a module: ``data`` (records, their JSON), ``oauth`` (the shared OAuth flow with Clever's
differences), ``api`` (routes, scopes, paging), ``controls`` (what tests do to it; the class they use).
"""

from emulators.clever.controls import CleverEmulator
from emulators.clever.data import MSG_NOT_IN_SCOPE

__all__ = ["MSG_NOT_IN_SCOPE", "CleverEmulator"]
