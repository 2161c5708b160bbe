from django.contrib.auth.decorators import login_not_required
from django.urls import path
from drf_spectacular.views import SpectacularAPIView

from webapp.api import views
from webapp.datasets import tus
from webapp.api.schema import settings as schema_settings
from webapp.hub.api import ModelList
from webapp.sweeps import api as sweeps

# The schema's description carries what OpenAPI cannot: the websockets (webapp/api/schema.py).
SCHEMA_SETTINGS = schema_settings()

app_name = "api"
urlpatterns = [
    path("schema/", login_not_required(SpectacularAPIView.as_view(custom_settings=SCHEMA_SETTINGS)), name="schema"),
    path("architectures/", views.ArchitectureList.as_view(), name="architectures"),
    path("models/", ModelList.as_view(), name="models"),
    path("uploads/", views.UploadList.as_view(), name="uploads"),
    path("uploads/<uuid:pk>/", views.UploadDetail.as_view(), name="upload"),
    path("uploads/tus/", tus.TusCreate.as_view(), name="tus"),
    path("uploads/tus/<uuid:pk>/", tus.TusUpload.as_view(), name="tus-upload"),
    path("datasets/", views.DatasetList.as_view(), name="datasets"),
    path("datasets/<uuid:pk>/", views.DatasetDetail.as_view(), name="dataset"),
    path("datasets/<uuid:pk>/share/", views.DatasetShareView.as_view(), name="dataset-share"),
    path("train-defaults/", views.TrainDefaults.as_view(), name="train-defaults"),
    path("jobs/", views.JobList.as_view(), name="jobs"),
    path("jobs/bulk/", views.JobBulk.as_view(), name="jobs-bulk"),
    path("jobs/<uuid:pk>/", views.JobDetail.as_view(), name="job"),
    path("jobs/<uuid:pk>/repeat/", views.JobRepeat.as_view(), name="job-repeat"),
    path("jobs/<uuid:pk>/cancel/", views.JobCancel.as_view(), name="job-cancel"),
    path("jobs/<uuid:pk>/retry/", views.JobRetry.as_view(), name="job-retry"),
    path("jobs/<uuid:pk>/continue/", views.JobContinue.as_view(), name="job-continue"),
    path("jobs/<uuid:pk>/events/", views.JobEvents.as_view(), name="job-events"),
    path("jobs/<uuid:pk>/predictions/", views.JobPredictions.as_view(), name="job-predictions"),
    path("jobs/<uuid:pk>/predictions/<uuid:prediction>/", views.JobPrediction.as_view(), name="job-prediction"),
    path("jobs/<uuid:pk>/onnx/", views.JobOnnx.as_view(), name="job-onnx"),
    path("jobs/<uuid:pk>/artifacts/<str:name>", views.ArtifactDownload.as_view(), name="artifact"),
    path("jobs/<uuid:pk>/exports/tensorboard/", views.JobTensorboardExport.as_view(), name="job-export-tensorboard"),
    path("jobs/<uuid:pk>/exports/mlflow/", views.JobMlflowExports.as_view(), name="job-export-mlflow"),
    path("jobs/<uuid:pk>/exports/mlflow/<uuid:export>/", views.JobMlflowExport.as_view(),
         name="job-export-mlflow-result"),
    path("sweeps/", sweeps.SweepList.as_view(), name="sweeps"),
    path("sweeps/<uuid:pk>/", sweeps.SweepDetail.as_view(), name="sweep"),
    path("sweeps/<uuid:pk>/cancel/", sweeps.SweepCancel.as_view(), name="sweep-cancel"),
    path("sweeps/<uuid:pk>/promote/", sweeps.SweepPromote.as_view(), name="sweep-promote"),
]
