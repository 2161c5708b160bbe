from django.apps import AppConfig


class SweepsConfig(AppConfig):
    name = "webapp.sweeps"
    label = "sweeps"

    def ready(self) -> None:
        # A trial's job reporting a validation epoch or ending advances its sweep
        # (webapp/jobs/signals.py: sent after the events' transaction commits).
        from webapp.jobs.signals import job_progressed
        from webapp.sweeps import services

        job_progressed.connect(services.on_job_progressed, dispatch_uid="sweeps.advance")
