from django.apps import AppConfig


class InferenceConfig(AppConfig):
    name = "webapp.inference"
    verbose_name = "Inference"  # try-the-model requests and ONNX exports
    default_auto_field = "django.db.models.BigAutoField"
