from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from webapp.accounts.urls import auth_urlpatterns
from webapp.monitoring.views import metrics

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="jobs:list"), name="home"),
    *auth_urlpatterns,
    path("account/", include("webapp.accounts.urls")),
    path("datasets/", include("webapp.datasets.urls")),
    path("jobs/", include("webapp.jobs.urls")),
    path("sweeps/", include("webapp.sweeps.urls")),
    path("models/", include("webapp.hub.urls")),
    path("cluster/", include("webapp.cluster.urls")),
    path("api/", include("webapp.api.urls")),
    path("admin/", admin.site.urls),
    # Prometheus (webapp/monitoring): a bearer token or a staff session. /healthz and /readyz are
    # answered in front of Django (webapp/monitoring/health.py, webapp/asgi.py).
    path("metrics", metrics, name="metrics"),
]

# Under /api/ a URL that matches nothing (e.g. a job id that is not a UUID) or a crash answers JSON.
handler404 = "webapp.api.errors.not_found"
handler500 = "webapp.api.errors.server_failure"
