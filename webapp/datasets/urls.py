from django.urls import path

from webapp.datasets import views

app_name = "datasets"
urlpatterns = [
    path("", views.dataset_list, name="list"),
    path("detect-kind/", views.detect_kind, name="detect-kind"),
    path("samples/", views.add_samples, name="samples"),
    path("<uuid:pk>/first-job/", views.first_job, name="first-job"),
    path("<uuid:pk>/", views.dataset_detail, name="detail"),
    path("<uuid:pk>/edit/", views.dataset_edit, name="edit"),
    path("<uuid:pk>/share/", views.dataset_share, name="share"),
    path("<uuid:pk>/delete/", views.dataset_delete, name="delete"),
    path("<uuid:pk>/previews/<str:name>", views.dataset_preview, name="preview"),
    path("failures/<uuid:pk>/dismiss/", views.failure_dismiss, name="dismiss-failure"),
]
