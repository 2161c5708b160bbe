from django.contrib import admin

from webapp.hub.models import LocalModel


@admin.register(LocalModel)
class LocalModelAdmin(admin.ModelAdmin):
    list_display = ["name", "task", "path", "owner", "size_bytes", "created_at"]
    list_filter = ["task"]
    search_fields = ["name", "path", "owner__username"]
    readonly_fields = ["id", "size_bytes", "created_at"]
