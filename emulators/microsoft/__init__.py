"""Local stand-in for Microsoft Entra ID (v2.0 endpoints) and Graph v1.0 Education, served over HTTPS.

A fully read ``educationUser`` carries birth date, gender, both addresses, phones, guardians
(``relatedContacts``), student numbers and more (providers.md 3.2); every user here holds every
documented property, filled with distinctive synthetic canary values, plus one no documentation names.
Identity follows what MSAL Python needs (library-notes 2); Graph answers with absolute
``@odata.nextLink``s, ``$select``, ``$top``, delta and JSON ``$batch``. Where providers.md marks a
behaviour as unconfirmed ([U]/[O]) the choice made here is named in the docstring of the code that makes it.

One layer a module: ``data`` (tenants, records, error shapes), ``oauth`` (the shared OAuth flow with
Entra's differences), ``api`` (Graph routes, delta, batch), ``controls`` (what tests do; the class they use).
"""

from emulators.microsoft.controls import MicrosoftEmulator
from emulators.microsoft.data import APP_ROLES, DELEGATED_SCOPES, GRAPH_RESOURCE

__all__ = ["APP_ROLES", "DELEGATED_SCOPES", "GRAPH_RESOURCE", "MicrosoftEmulator"]
