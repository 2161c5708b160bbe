from django.contrib import admin

from webapp.datasets.models import Dataset, IngestFailure


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ["name", "owner", "kind", "status", "size_bytes", "created_at"]
    list_filter = ["status", "kind"]
    search_fields = ["name", "owner__username", "original_filename"]
    readonly_fields = ["id", "status", "error", "original_filename", "size_bytes", "info", "options", "created_at"]


@admin.register(IngestFailure)
class IngestFailureAdmin(admin.ModelAdmin):
    list_display = ["name", "owner", "kind", "original_filename", "created_at"]
    list_filter = ["kind"]
    search_fields = ["name", "owner__username", "original_filename", "error"]
    readonly_fields = ["id", "owner", "name", "kind", "original_filename", "error", "created_at"]
