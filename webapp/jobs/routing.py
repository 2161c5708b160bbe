from django.urls import path

from webapp.jobs.consumers import JobConsumer, UserConsumer

websocket_urlpatterns = [
    path("ws/jobs/<uuid:pk>/", JobConsumer.as_asgi()),
    path("ws/user/", UserConsumer.as_asgi()),
]
