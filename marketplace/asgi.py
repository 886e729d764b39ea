"""The ASGI application: Django for HTTP, plus the streaming routes (SSE, WebSocket) on Channels."""
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")
django_application = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.urls import re_path  # noqa: E402

from jobs.routing import http_urlpatterns, websocket_urlpatterns  # noqa: E402

if settings.SERVE_STATIC:
    # the embedded default has no web server in front to serve the admin's CSS and scripts
    django_application = ASGIStaticFilesHandler(django_application)

application = ProtocolTypeRouter(
    {
        "http": URLRouter([*http_urlpatterns, re_path(r"", django_application)]),
        # the session too: the dashboards' pages open WebSockets as the signed-in customer
        "websocket": AuthMiddlewareStack(URLRouter(websocket_urlpatterns)),
    }
)
