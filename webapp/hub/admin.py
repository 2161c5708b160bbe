from django.contrib import admin

from webapp.hub.models import LocalModel


@admin.register(LocalModel)
class LocalModelAdmin(admin.ModelAdmin):
    list_display = ["name", "task", "status", "path", "owner", "size_bytes", "created_at"]
    list_filter = ["task", "status"]
    search_fields = ["name", "path", "owner__username"]
    readonly_fields = ["id", "size_bytes", "status", "error", "created_at"]  # status: set by the extraction
