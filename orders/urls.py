from django.urls import path

from orders import views

app_name = "orders"
urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("orders/new/", views.place, name="place"),
    path("orders/<int:pk>/", views.detail, name="detail"),
    path("orders/<int:pk>/compare/", views.compare, name="compare"),
    path("orders/<int:pk>/actions/<str:action>/", views.order_action, name="action"),
    path("orders/bulk/<str:action>/", views.bulk_confirm, name="bulk-confirm"),
    path("orders/bulk/<str:action>/apply/", views.bulk_apply, name="bulk-apply"),
    path("services/<str:service>/", views.set_switch, name="switch"),
]
