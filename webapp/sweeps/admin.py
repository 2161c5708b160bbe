from django.contrib import admin

from webapp.sweeps.models import Sweep, Trial


class TrialInline(admin.TabularInline):
    model = Trial
    extra = 0
    fields = ["number", "job", "state", "value", "params"]
    readonly_fields = fields
    can_delete = False


@admin.register(Sweep)
class SweepAdmin(admin.ModelAdmin):
    list_display = ["name", "owner", "architecture", "metric", "status", "budget", "concurrency", "created_at"]
    list_filter = ["status", "architecture"]
    search_fields = ["name", "owner__username"]
    readonly_fields = ["id", "status", "space", "direction", "created_at", "finished_at"]
    inlines = [TrialInline]
