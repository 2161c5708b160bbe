"""Admin → Workers: an operations list, not a change form. Rows are written by the workers
themselves (registration, heartbeat); an operator reads them and acts on them: drain, undrain,
cancel the running job, retire, forget a dead worker (webapp/cluster/services.py, audited).
There is no "add worker" and nothing to edit; a worker's page is a read-only view of the same
facts with its recent jobs and the actions as buttons."""

from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from webapp.cluster import services
from webapp.cluster.models import Worker


def _gb(n) -> str:
    return f"{n / 1e9:.1f}" if n else "?"


def gpu_bars(gpus) -> str:
    """One line per GPU: a memory bar (CSS width only, no inline script), utilisation, temperature."""
    if not gpus:
        return "CPU"
    rows = []
    for g in gpus:
        total, used = g.get("memory_total") or 0, g.get("memory_used")
        pct = int(100 * used / total) if total and used is not None else 0
        util = "?" if g.get("utilization") is None else f"{g['utilization']}%"
        temp = "?" if g.get("temperature") is None else f"{g['temperature']} °C"
        rows.append((g.get("index"), g.get("name") or "GPU", g.get("capability") or "?", pct,
                     _gb(used), _gb(total), util, temp))
    return format_html_join(
        "", '<div class="gpu">#{} {} (sm {}) <progress max="100" value="{}"></progress> {} / {} GB · '
            'util {} · {}</div>', rows)


def heartbeat_text(w: Worker, now=None) -> str:
    """'14:03:07 (4 s ago)': to the second, with the age (the liveness rule counts seconds)."""
    now = now or timezone.now()
    age = max(0, int((now - w.last_heartbeat).total_seconds()))
    when = timezone.localtime(w.last_heartbeat).strftime("%Y-%m-%d %H:%M:%S")
    if age < 120:
        return f"{when} ({age} s ago)"
    return f"{when} ({age // 60} min ago)" if age < 7200 else f"{when} ({age // 3600} h ago)"


def state_of(w: Worker) -> str:
    if w.status == Worker.Status.RETIRED:
        return "retired"
    if not w.is_alive:
        return "offline (no heartbeat)" if w.status == Worker.Status.ONLINE else "offline"
    return "draining" if w.draining else "online"


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    list_display = ["name", "hostname", "state", "heartbeat", "devices_display", "running", "queues"]
    list_display_links = ["name"]
    list_filter = ["status", "draining", "hostname"]
    search_fields = ["name", "hostname"]
    actions = ["drain", "resume", "cancel_running_job", "retire", "forget"]
    change_form_template = "admin/cluster/worker/detail.html"

    class Media:
        js = ["js/worker_admin.js"]  # reloads every 5 s: live GPU bars and heartbeats

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("current_job", "current_job__owner")

    # -- read-only: workers write their own rows ------------------------------------------------
    def has_add_permission(self, request):
        return False

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # "forget" is the delete, refused for live workers
        return actions

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """A read-only page of one worker with its actions as buttons (posted to the list's
        action machinery, so the permission checks and the audit are the same)."""
        w = self.get_object(request, object_id)
        if w is None or not self.has_view_or_change_permission(request, w):
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if request.method == "POST":
            return HttpResponseRedirect(request.path)  # nothing here is edited
        from webapp.jobs.models import Job

        jobs = Job.objects.filter(worker_name=w.name).select_related("owner").order_by("-created_at")[:50]
        actions = [(name, desc) for name, (func, name_, desc) in self.get_actions(request).items()]
        context = {
            **self.admin_site.each_context(request), "opts": self.opts, "title": f"Worker {w.name}",
            "worker": w, "state": state_of(w), "heartbeat": heartbeat_text(w), "devices": self.devices_display(w),
            "jobs": jobs, "actions": actions, "changelist": reverse("admin:cluster_worker_changelist"),
            "has_view_permission": True, "original": w,
        }
        return TemplateResponse(request, self.change_form_template, context)

    def delete_view(self, request, object_id, extra_context=None):
        """No stock delete: "Forget" removes a worker, only once it is dead, and audits it."""
        self.message_user(request, "Workers are removed with the Forget action (dead workers only).", messages.WARNING)
        return HttpResponseRedirect(reverse("admin:cluster_worker_change", args=[object_id]))

    # -- columns ----------------------------------------------------------------------------------
    @admin.display(description="state")
    def state(self, obj):
        return state_of(obj)

    @admin.display(description="last heartbeat", ordering="last_heartbeat")
    def heartbeat(self, obj):
        return heartbeat_text(obj)

    @admin.display(description="devices (memory, utilisation, temperature)")
    def devices_display(self, obj):
        if not obj.gpus:
            return f"CPU · {obj.devices} device{'' if obj.devices == 1 else 's'}"
        return gpu_bars(obj.gpus)

    @admin.display(description="running job")
    def running(self, obj):
        j = obj.current_job
        if j is None:
            return "—"
        return format_html('<a href="{}">{}</a> · {} · {}', reverse("admin:jobs_job_change", args=[j.pk]), j.name,
                           j.owner, j.status)

    # -- actions (webapp/cluster/services.py: audited) --------------------------------------------
    @admin.action(description="Drain: finish the current job, take no more", permissions=["change"])
    def drain(self, request, queryset):
        n = services.drain(request.user, queryset)
        self.message_user(request, f"{n} worker(s) draining; they stop consuming within one heartbeat")

    @admin.action(description="Undrain: take jobs again", permissions=["change"])
    def resume(self, request, queryset):
        n = services.undrain(request.user, queryset)
        self.message_user(request, f"{n} worker(s) taking jobs again (retired workers stay retired)")

    @admin.action(description="Cancel the running job", permissions=["change"])
    def cancel_running_job(self, request, queryset):
        from webapp.jobs.services import cancel_job

        done = 0
        for w in queryset.select_related("current_job"):
            if w.current_job is not None and not w.current_job.is_final:
                cancel_job(w.current_job, actor=request.user)
                done += 1
        self.message_user(request, f"cancel requested for {done} running job(s)",
                          messages.SUCCESS if done else messages.WARNING)

    @admin.action(description="Retire: drain and keep out of the cluster", permissions=["change"])
    def retire(self, request, queryset):
        n = services.retire(request.user, queryset)
        self.message_user(request, f"{n} worker(s) retired; stop their processes when their jobs end")

    @admin.action(description="Forget: remove dead workers from the list", permissions=["delete"])
    def forget(self, request, queryset):
        gone, alive = services.forget(request.user, queryset)
        if gone:
            self.message_user(request, f"forgot {len(gone)} worker(s): {', '.join(gone)}")
        if alive:
            self.message_user(request, f"not forgotten, still alive (drain or retire them first, then stop the "
                                       f"process): {', '.join(alive)}", messages.WARNING)
