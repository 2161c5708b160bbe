from django.contrib import admin

from webapp.jobs.models import Artifact, Job


class ArtifactInline(admin.TabularInline):
    model = Artifact
    extra = 0
    readonly_fields = ["name", "size_bytes", "sha256", "created_at"]
    can_delete = False


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["name", "owner", "architecture", "status", "worker_name", "epoch", "attempts", "created_at"]
    list_filter = ["status", "architecture"]
    search_fields = ["name", "owner__username", "worker_name"]
    readonly_fields = ["id", "status", "error", "attempts", "worker_name", "epoch", "step", "total_steps",
                       "metrics", "last_seq", "heartbeat_at", "created_at", "started_at", "finished_at"]
    inlines = [ArtifactInline]
