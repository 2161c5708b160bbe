from django.contrib.auth import views as auth_views
from django.urls import path

from webapp.accounts import views

app_name = "accounts"
urlpatterns = [
    path("profile/", views.profile, name="profile"),
    path("token/", views.create_api_token, name="token"),
    path("token/revoke/", views.revoke_api_token, name="revoke_token"),
    path("notifications/", views.notification_settings, name="notifications"),
    path("notifications/secret/", views.rotate_webhook_secret, name="webhook_secret"),
]

auth_urlpatterns = [
    path("accounts/login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/password/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path("accounts/password/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
]
