"""The WSGI application: REST, pages and the admin under gunicorn (``manage.py runweb``).

The WebSocket and streaming routes are not here: they need ASGI and run under Daphne
(``marketplace.asgi``), which a reverse proxy sends them to.
"""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")
application = get_wsgi_application()

from django.conf import settings  # noqa: E402  (needs Django set up)

if settings.SERVE_STATIC:
    from django.contrib.staticfiles.handlers import StaticFilesHandler

    # without a web server in front that serves them, the admin's CSS and scripts come from here
    application = StaticFilesHandler(application)
