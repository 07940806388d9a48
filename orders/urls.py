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
    path("demo/order/", views.demo_order, name="demo-order"),
    path("demo/scenarios/<str:name>/", views.scenario, name="scenario"),
    path("load/", views.load, name="load"),
    path("load/<int:pk>/stop/", views.stop_load, name="load-stop"),
    path("chaos/", views.chaos_panel, name="chaos"),
    path("chaos/start/", views.chaos_start, name="chaos-start"),
    path("chaos/stop/", views.chaos_stop, name="chaos-stop"),
]
