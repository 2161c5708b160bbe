from __future__ import annotations

from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST
from rest_framework.authtoken.models import Token

from webapp.accounts import audit


def profile(request):
    token = Token.objects.filter(user=request.user).first()
    new_key = request.session.pop("new_api_token", None)
    return render(request, "accounts/profile.html", {"token": token, "new_key": new_key})


@require_POST
def rotate_token(request):
    """Create (or replace) the user's API token; the key is shown once."""
    Token.objects.filter(user=request.user).delete()
    token = Token.objects.create(user=request.user)
    audit.record(request.user, "token.create")
    request.session["new_api_token"] = token.key
    messages.success(request, "New API token created. Copy it now: it is shown only once.")
    return redirect("accounts:profile")
