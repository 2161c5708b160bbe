from django.apps import AppConfig


class ExportsConfig(AppConfig):
    name = "webapp.exports"
    verbose_name = "Exports"  # a job's history as TensorBoard event files, pushes to MLflow
    default_auto_field = "django.db.models.BigAutoField"
