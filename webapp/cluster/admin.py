from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html_join

from webapp.accounts import audit
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


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    list_display = ["name", "hostname", "gpu_display", "devices", "queues", "status", "draining", "alive",
                    "last_heartbeat", "current_job"]
    list_filter = ["status", "draining", "device"]
    readonly_fields = ["name", "hostname", "queues", "device", "device_name", "gpu_display", "gpus", "devices",
                       "started_at", "last_heartbeat", "current_job", "draining", "job_history"]
    actions = ["drain", "resume", "cancel_running_job", "retire"]

    class Media:
        js = ["js/worker_admin.js"]  # reloads every 5 s: live GPU bars without a new endpoint

    @admin.display(boolean=True, description="heartbeat fresh")
    def alive(self, obj):
        return obj.is_alive

    @admin.display(description="GPUs (memory, utilisation, temperature)")
    def gpu_display(self, obj):
        return gpu_bars(obj.gpus)

    @admin.display(description="jobs run by this worker (latest 50)")
    def job_history(self, obj):
        from webapp.jobs.models import Job

        jobs = Job.objects.filter(worker_name=obj.name).select_related("owner").order_by("-created_at")[:50]
        if not jobs:
            return "none"
        return format_html_join(
            "", '<div><a href="{}">{}</a> · {} · {} · {}</div>',
            ((reverse("admin:jobs_job_change", args=[j.pk]), j.name, j.owner, j.status,
              j.started_at.strftime("%Y-%m-%d %H:%M") if j.started_at else "") for j in jobs))

    @admin.action(description="Drain: finish the current job, take no more", permissions=["change"])
    def drain(self, request, queryset):
        n = queryset.update(draining=True)
        for w in queryset:
            audit.record(request.user, "worker.drain", w)
        self.message_user(request, f"{n} worker(s) draining; they stop consuming within one heartbeat")

    @admin.action(description="Resume: take jobs again", permissions=["change"])
    def resume(self, request, queryset):
        n = queryset.exclude(status=Worker.Status.RETIRED).update(draining=False)
        for w in queryset:
            audit.record(request.user, "worker.resume", w)
        self.message_user(request, f"{n} worker(s) resumed (retired workers stay retired)")

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
        n = queryset.update(draining=True, status=Worker.Status.RETIRED)
        for w in queryset:
            audit.record(request.user, "worker.retire", w)
        self.message_user(request, f"{n} worker(s) retired; stop their processes when their jobs end")
