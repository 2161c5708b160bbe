"""A deactivated account runs nothing: when a user's `is_active` goes from True to False (the
admin's form, `manage.py`, any `save()`), their queued jobs are cancelled and running ones asked
to stop, each with the reason. (A queryset `.update(is_active=False)` sends no signal: the
admin's own actions go through `save()`.)"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver

User = get_user_model()


@receiver(pre_save, sender=User, dispatch_uid="trainyard.deactivation.before")
def _remember_active(sender, instance, update_fields=None, **kwargs):
    if update_fields is not None and "is_active" not in update_fields:
        instance._was_active = False  # e.g. last_login at sign-in: nothing to compare
        return
    instance._was_active = bool(instance.pk) and User.objects.filter(pk=instance.pk, is_active=True).exists()


@receiver(post_save, sender=User, dispatch_uid="trainyard.deactivation.after")
def _deactivated(sender, instance, created=False, **kwargs):
    if created or instance.is_active or not getattr(instance, "_was_active", False):
        return
    from webapp.jobs.models import Job
    from webapp.jobs.cancel import cancel_active_jobs

    transaction.on_commit(lambda: cancel_active_jobs(
        Job.objects.filter(owner_id=instance.pk), reason="the account was deactivated"))
