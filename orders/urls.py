from django.urls import path

from orders import views

app_name = "orders"
urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("orders/new/", views.place, name="place"),
    path("orders/<int:pk>/", views.detail, name="detail"),
    path("orders/<int:pk>/compare/", views.compare, name="compare"),
    path("orders/<int:pk>/actions/<str:action>/", views.order_action, name="action"),
    path("services/<str:service>/", views.set_switch, name="switch"),
    path("chaos/", views.chaos_panel, name="chaos"),
    path("chaos/start/", views.chaos_start, name="chaos-start"),
    path("chaos/stop/", views.chaos_stop, name="chaos-stop"),
]
