from django.contrib import admin

from webapp.cluster.models import Worker


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    list_display = ["name", "hostname", "device", "device_name", "queues", "status", "alive", "last_heartbeat",
                    "current_job"]
    list_filter = ["status", "device"]
    readonly_fields = ["name", "hostname", "queues", "device", "device_name", "gpus", "started_at",
                       "last_heartbeat", "current_job"]

    @admin.display(boolean=True, description="heartbeat fresh")
    def alive(self, obj):
        return obj.is_alive
