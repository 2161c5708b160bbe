from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from webapp.accounts import audit
from webapp.accounts.models import ApiToken, NotificationSettings
from webapp.accounts.notifications import validate_webhook_url
from webapp.accounts.webhooks import new_secret
from webapp.accounts.tokens import DEFAULT_EXPIRY, EXPIRY_CHOICES, create_token, revoke_token


def profile(request):
    tokens = ApiToken.objects.filter(user=request.user)
    new_token = request.session.pop("new_api_token", None)
    prefs = NotificationSettings.objects.filter(user=request.user).first()
    webhook_secret_once = request.session.pop("new_webhook_secret", None)
    return render(request, "accounts/profile.html", {
        "tokens": tokens, "new_token": new_token, "prefs": prefs,
        "expiry_choices": list(EXPIRY_CHOICES), "default_expiry": DEFAULT_EXPIRY,
        "new_webhook_secret": webhook_secret_once,
    })


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
def create_api_token(request):
    """A new named API token; its key is shown once (kept in the session until the next page)."""
    try:
        token, key = create_token(request.user, request.POST.get("name", ""),
                                  request.POST.get("expiry", DEFAULT_EXPIRY))
    except ValidationError as exc:
        messages.error(request, "API token: " + " ".join(exc.messages))
        return redirect("accounts:profile")
    request.session["new_api_token"] = {"name": token.name, "key": key}
    messages.success(request, "New API token created. Copy it now: it is shown only once.")
    return redirect("accounts:profile")


@require_POST
def revoke_api_token(request):
    """Revoke one of one's own tokens; another user's (or an unknown) id changes nothing."""
    if revoke_token(request.user, request.POST.get("token", "")):
        messages.success(request, "Token revoked: it no longer works.")
    else:
        messages.error(request, "You have no such token (already revoked?).")
    return redirect("accounts:profile")
