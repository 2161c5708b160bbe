from django.apps import AppConfig


class HubConfig(AppConfig):
    name = "webapp.hub"
    label = "hub"
    verbose_name = "Pretrained models"
