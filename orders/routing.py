from django.urls import path, re_path

from orders import consumers

websocket_urlpatterns = [
    path("ws/orders/", consumers.BoardConsumer.as_asgi()),
    path("ws/orders/<int:order_id>/", consumers.OrderConsumer.as_asgi()),
    re_path(r"^", consumers.UnknownPathConsumer.as_asgi()),
]
