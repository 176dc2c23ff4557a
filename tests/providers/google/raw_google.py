"""Reads the emulator the way a careless client would (every field, every scope) to compute what we SHOULD store."""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import requests

from emulators.google import GoogleEmulator


def full_token(emulator: GoogleEmulator, user_id: str, scopes: list[str]) -> str:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    session = requests.Session()
    session.trust_env = False
    session.verify = str(emulator.ca_path)
    query = {
        "response_type": "code",
        "client_id": emulator.client_id,
        "redirect_uri": "https://raw.test/cb",
        "scope": " ".join(scopes),
        "state": "s",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "login_hint": user_id,
    }
    location = session.get(f"{emulator.auth_uri}?{urlencode(query)}", allow_redirects=False).headers["Location"]
    code = parse_qs(urlsplit(location).query)["code"][0]
    token = session.post(
        emulator.token_uri,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": "https://raw.test/cb",
            "client_id": emulator.client_id,
            "client_secret": emulator.client_secret,
            "code_verifier": verifier,
        },
    ).json()
    return str(token["access_token"])


def list_all(emulator: GoogleEmulator, token: str, path: str, key: str, **params: Any) -> list[dict[str, Any]]:
    session = requests.Session()
    session.trust_env = False
    session.verify = str(emulator.ca_path)
    items: list[dict[str, Any]] = []
    page_token = None
    while True:
        query = dict(params, **({"pageToken": page_token} if page_token else {}))
        body = session.get(
            f"{emulator.api_endpoint}{path}", params=query, headers={"Authorization": f"Bearer {token}"}
        ).json()
        items.extend(body.get(key, []))
        page_token = body.get("nextPageToken")
        if not page_token:
            return items
