from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "webapp.accounts"
    label = "accounts"

    def ready(self):
        from webapp import deploy_checks  # noqa: F401 - registers the deploy checks
        from webapp.accounts import audit, deactivation, sockets, tokens  # noqa: F401 - connects the signal receivers
