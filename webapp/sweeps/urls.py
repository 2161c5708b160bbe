from django.urls import path

from webapp.sweeps import views

app_name = "sweeps"
urlpatterns = [
    path("", views.sweep_list, name="list"),
    path("new/", views.sweep_new, name="new"),
    path("<uuid:pk>/", views.sweep_detail, name="detail"),
    path("<uuid:pk>/cancel/", views.sweep_cancel, name="cancel"),
    path("<uuid:pk>/promote/", views.sweep_promote, name="promote"),
]
