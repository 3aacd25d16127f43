"""`python -m services.dispatch`: serve dispatch on GIAO_DISPATCH_PORT (8002)."""

from shared.service import serve

from .app import DispatchSettings, create_app

settings = DispatchSettings()
serve(create_app(settings), settings, settings.port)
