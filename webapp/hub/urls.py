from django.urls import path

from webapp.hub import views

app_name = "hub"
urlpatterns = [
    path("", views.model_list, name="list"),
    path("<uuid:pk>/delete/", views.model_delete, name="delete"),
]
