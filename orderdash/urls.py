from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from orders.prometheus import metrics_view

admin.site.site_header = "orderdash admin"
admin.site.site_title = "orderdash"

urlpatterns = [
    path("admin/", admin.site.urls),
    # Log in and out only: no password reset by mail, which nothing here could send.
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    # Prometheus's default path, no trailing slash.
    path("metrics", metrics_view, name="metrics"),
    path("", include("orders.urls")),
]
