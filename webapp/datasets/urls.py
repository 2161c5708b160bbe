from django.urls import path

from webapp.datasets import views

app_name = "datasets"
urlpatterns = [
    path("", views.dataset_list, name="list"),
    path("<uuid:pk>/", views.dataset_detail, name="detail"),
    path("<uuid:pk>/delete/", views.dataset_delete, name="delete"),
]
