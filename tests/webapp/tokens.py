"""An API key for a test user, whichever token backend the API authenticates with: DRF's
authtoken today, django-rest-knox (`webapp.accounts.tokens.create_token`) once that lands."""

from __future__ import annotations


def api_key(user) -> str:
    try:
        from webapp.accounts.tokens import create_token
    except ImportError:
        from rest_framework.authtoken.models import Token

        return Token.objects.get_or_create(user=user)[0].key
    return create_token(user, "tests", "never")[1]
