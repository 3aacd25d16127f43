"""`python -m services.orders`: serve the orders API on GIAO_ORDERS_PORT (8001)."""

from services.orders.app import create_app
from services.orders.settings import OrdersSettings
from shared.service import serve

settings = OrdersSettings()
serve(create_app(settings), settings, settings.port)
