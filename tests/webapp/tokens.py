"""An API key for a test user, made the way the profile page makes one (hashed, knox)."""

from __future__ import annotations

from tests.webapp.factories import api_token


def api_key(user) -> str:
    return api_token(user)
