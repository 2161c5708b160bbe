from django.contrib import admin

from webapp.jobs.models import Artifact, Job, UserLimits


class ArtifactInline(admin.TabularInline):
    model = Artifact
    extra = 0
    readonly_fields = ["name", "size_bytes", "sha256", "created_at"]
    can_delete = False


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["name", "owner", "architecture", "status", "priority", "wait_reason", "worker_name", "epoch",
                    "attempts", "created_at"]
    list_editable = ["priority"]  # admins may raise a job's priority (the dispatcher's order)
    list_filter = ["status", "architecture"]
    search_fields = ["name", "owner__username", "worker_name"]
    readonly_fields = ["id", "status", "error", "attempts", "worker_name", "epoch", "step", "total_steps",
                       "metrics", "last_seq", "heartbeat_at", "created_at", "started_at", "finished_at",
                       "dispatched_at", "wait_reason"]

    actions = ["retry_failed"]

    @admin.action(description="Retry the selected failed jobs (from their last checkpoint)")
    def retry_failed(self, request, queryset):
        from webapp.jobs.services import RetryError, retry_job

        done = refused = 0
        for job in queryset.filter(status=Job.Status.FAILED):
            try:
                retry_job(job, actor=request.user)
                done += 1
            except RetryError:
                refused += 1
        self.message_user(request, f"{done} job(s) queued again" + (f"; {refused} refused (limit)" if refused else ""))

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        from webapp.jobs.scheduler import dispatch_soon

        dispatch_soon()  # a new priority or requirement counts at once
    inlines = [ArtifactInline]


@admin.register(UserLimits)
class UserLimitsAdmin(admin.ModelAdmin):
    """Per-user overrides of TRAINYARD_MAX_RUNNING_PER_USER / TRAINYARD_MAX_ACTIVE_JOBS_PER_USER."""

    list_display = ["user", "max_running", "max_queued"]
    search_fields = ["user__username"]
    autocomplete_fields = ["user"]
