from __future__ import annotations

from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST
from rest_framework.authtoken.models import Token

from django.core.exceptions import ValidationError

from webapp.accounts import audit
from webapp.accounts.models import NotificationSettings
from webapp.accounts.notifications import validate_webhook_url
from webapp.accounts.webhooks import new_secret


def profile(request):
    token = Token.objects.filter(user=request.user).first()
    new_key = request.session.pop("new_api_token", None)
    prefs = NotificationSettings.objects.filter(user=request.user).first()
    new_secret = request.session.pop("new_webhook_secret", None)
    return render(request, "accounts/profile.html", {"token": token, "new_key": new_key, "prefs": prefs,
                                                     "new_webhook_secret": new_secret})


@require_POST
def notification_settings(request):
    """E-mail and webhook settings for the end of one's jobs; a bad URL changes nothing."""
    email = request.POST.get("email") == "on"
    try:
        url = validate_webhook_url(request.POST.get("webhook_url", ""))
    except ValidationError as exc:
        messages.error(request, "Webhook URL: " + " ".join(exc.messages))
        return redirect("accounts:profile")
    if email and not request.user.email:
        messages.error(request, "Your account has no e-mail address; ask an admin to add one.")
        return redirect("accounts:profile")
    prefs, _ = NotificationSettings.objects.update_or_create(user=request.user,
                                                             defaults={"email": email, "webhook_url": url})
    audit.record(request.user, "notifications.update", email=email, webhook=bool(url))
    messages.success(request, "Notification settings saved.")
    if url and not prefs.webhook_secret:
        _new_webhook_secret(request, prefs)
    return redirect("accounts:profile")


def _new_webhook_secret(request, prefs) -> None:
    prefs.webhook_secret = new_secret()
    prefs.save(update_fields=["webhook_secret"])
    request.session["new_webhook_secret"] = prefs.webhook_secret
    messages.success(request, "Webhook signing secret created. Copy it now: it is shown only once.")


@require_POST
def rotate_webhook_secret(request):
    """Replace the webhook signing secret (deliveries from now on are signed with the new one)."""
    prefs, _ = NotificationSettings.objects.get_or_create(user=request.user)
    _new_webhook_secret(request, prefs)
    audit.record(request.user, "notifications.secret")
    return redirect("accounts:profile")


@require_POST
def rotate_token(request):
    """Create (or replace) the user's API token; the key is shown once."""
    Token.objects.filter(user=request.user).delete()
    token = Token.objects.create(user=request.user)
    audit.record(request.user, "token.create")
    request.session["new_api_token"] = token.key
    messages.success(request, "New API token created. Copy it now: it is shown only once.")
    return redirect("accounts:profile")
