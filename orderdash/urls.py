from django.contrib import admin
from django.urls import include, path

admin.site.site_header = "orderdash admin"
admin.site.site_title = "orderdash"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("orders.urls")),
]
