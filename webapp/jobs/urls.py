from django.urls import path

from webapp.inference import views as inference_views
from webapp.jobs import views

app_name = "jobs"
urlpatterns = [
    path("", views.job_list, name="list"),
    path("new/", views.job_new, name="new"),
    path("new/memory/", views.memory_estimate, name="memory"),
    path("bulk/", views.jobs_bulk, name="bulk"),
    path("compare/", views.job_compare, name="compare"),
    path("compare/save/", views.compare_save, name="compare-save"),
    path("compare/views/<uuid:pk>/", views.compare_view, name="compare-view"),
    path("compare/views/<uuid:pk>/delete/", views.compare_view_delete, name="compare-view-delete"),
    path("<uuid:pk>/", views.job_detail, name="detail"),
    path("<uuid:pk>/cancel/", views.job_cancel, name="cancel"),
    path("<uuid:pk>/retry/", views.job_retry, name="retry"),
    path("<uuid:pk>/continue/", views.job_continue, name="continue"),
    path("<uuid:pk>/delete/", views.job_delete, name="delete"),
    path("<uuid:pk>/tags/", views.job_tags, name="tags"),
    path("<uuid:pk>/note/", views.job_note, name="note"),
    path("<uuid:pk>/archive/", views.job_archive, name="archive"),
    path("<uuid:pk>/repeat/", views.job_repeat, name="repeat"),
    path("<uuid:pk>/outputs/", views.job_outputs, name="outputs"),
    path("<uuid:pk>/model-card/", views.model_card, name="model-card"),
    path("<uuid:pk>/checkpoint/", views.checkpoint_download, name="checkpoint"),
    path("<uuid:pk>/artifacts/<str:name>", views.artifact_download, name="artifact"),
    path("<uuid:pk>/try/", inference_views.try_page, name="try"),
    path("<uuid:pk>/try/predict/", inference_views.predict, name="predict"),
    path("<uuid:pk>/try/result/", inference_views.prediction, name="prediction"),
    path("<uuid:pk>/try/batch/", inference_views.batch_create, name="batch"),
    path("<uuid:pk>/try/batch/<uuid:batch_id>/", inference_views.batch_status, name="batch-status"),
    path("<uuid:pk>/try/batch/<uuid:batch_id>/download/", inference_views.batch_download, name="batch-download"),
    path("<uuid:pk>/onnx/", inference_views.onnx, name="onnx"),
]
