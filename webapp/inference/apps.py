from django.apps import AppConfig


class InferenceConfig(AppConfig):
    name = "webapp.inference"
    default_auto_field = "django.db.models.BigAutoField"
