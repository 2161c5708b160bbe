from django.apps import AppConfig


class HubConfig(AppConfig):
    name = "webapp.hub"
    label = "hub"
    verbose_name = "Model hub"  # the product noun for app `hub` (its page is the model hub)
