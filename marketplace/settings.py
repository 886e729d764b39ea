"""Settings of the marketplace, read from the environment only.

With nothing set, everything falls back to the embedded default of
ARCHITECTURE.md: a SQLite file under ``var/`` and no outside services.
"""
from __future__ import annotations

from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from marketplace.env import database_from_url, env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("MARKETPLACE_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if env_bool("MARKETPLACE_REQUIRE_SECRET_KEY", False):
        raise ImproperlyConfigured("SECRET_KEY must be set")
    # The embedded default is a single-machine demo; a fixed key there only
    # signs demo sessions. Production sets SECRET_KEY (and the flag above).
    SECRET_KEY = "embedded-default-not-for-production"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    # before django_dramatiq: its rundramatiq runs under marketplace's, which restarts it
    "marketplace",
    "django_dramatiq",
    "jobs",
    "nodes",
    "billing",
    "privacy",
]

MIDDLEWARE = [
    "marketplace.errors.ApiErrorMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "marketplace.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "marketplace.wsgi.application"
ASGI_APPLICATION = "marketplace.asgi.application"

_database_url = env_str("DATABASE_URL")
if _database_url:
    DATABASES = {"default": database_from_url(_database_url)}
    if DATABASES["default"]["ENGINE"].endswith("postgresql") and env_bool("DATABASE_POOL", True):
        # Under ASGI, persistent connections ran PostgreSQL out of connections and
        # CONN_MAX_AGE=0 capped writes (ENVIRONMENT.md); Django's own pool does neither.
        DATABASES["default"]["OPTIONS"]["pool"] = {
            "min_size": env_int("DATABASE_POOL_MIN", 1),
            # room for every thread of the process that may hold one at once (a worker's 8 threads,
            # the web tier's request and frame threads); each holds it for one short transaction
            "max_size": env_int("DATABASE_POOL_MAX", 20),
            # how long a request waits for a connection: with PostgreSQL down it answers 503
            # after this, never hangs (marketplace.errors.DATABASE_UNAVAILABLE)
            "timeout": env_int("DATABASE_POOL_TIMEOUT", 10),
        }
    if DATABASES["default"]["ENGINE"].endswith("postgresql"):
        DATABASES["default"]["OPTIONS"].setdefault("connect_timeout", env_int("DATABASE_CONNECT_TIMEOUT", 5))
    if DATABASES["default"]["ENGINE"].endswith("postgresql"):
        # parameters travel beside the statement instead of quoted into it, and a statement a
        # connection has run this many times is prepared (parsed and planned once): the job
        # path's statements are the same few every time. Behind a pooler in transaction mode
        # (PgBouncer < 1.21), set DATABASE_PREPARE_THRESHOLD=0 to prepare nothing.
        DATABASES["default"]["OPTIONS"]["server_side_binding"] = env_bool("DATABASE_SERVER_SIDE_BINDING", True)
        DATABASES["default"]["OPTIONS"]["prepare_threshold"] = env_int("DATABASE_PREPARE_THRESHOLD", 5) or None
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)  # SQLite makes the file, not its folder
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(VAR_DIR / "marketplace.sqlite3"),
            # keep the connection: opening one (and setting WAL on it) cost more than a
            # whole request; SQLite has no server whose connections could run out
            "CONN_MAX_AGE": None,
            # WAL lets the web process read while a worker writes; the busy
            # timeout makes a writer wait for the lock instead of failing
            "OPTIONS": {
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
            # a file, not memory: tests run real agents and worker threads against it
            "TEST": {"NAME": env_str("MARKETPLACE_TEST_SQLITE", str(VAR_DIR / "test.sqlite3"))},
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
# runmarket serves static files itself; behind a web server that does, set SERVE_STATIC=false
SERVE_STATIC = env_bool("SERVE_STATIC", True)

# --- people signing in: the dashboards and the admin ----------------------------------
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/accounts/home/"  # sends each person to their own dashboard
LOGOUT_REDIRECT_URL = "/accounts/login/"
AUTHENTICATION_BACKENDS = ["marketplace.web.login_throttle.ThrottledModelBackend"]
# sign-in attempts allowed per window, counted before the password is checked; one over
# a limit is refused (even with the right password) until the window ends
# (marketplace.web.login_throttle): from one address on one account (the guesser's lock),
# from one address on any, and on one account from any address (which locks the owner too)
LOGIN_FAILURES_ALLOWED = env_int("LOGIN_FAILURES_ALLOWED", 5)
LOGIN_ADDRESS_ATTEMPTS_ALLOWED = env_int("LOGIN_ADDRESS_ATTEMPTS_ALLOWED", 30)
LOGIN_ACCOUNT_ATTEMPTS_ALLOWED = env_int("LOGIN_ACCOUNT_ATTEMPTS_ALLOWED", 100)
LOGIN_FAILURE_WINDOW_SECONDS = env_int("LOGIN_FAILURE_WINDOW_SECONDS", 15 * 60)
# proxies in front of the web tier that append to X-Forwarded-For (0: clients connect directly);
# the client's address is then the one the outermost of them saw
TRUSTED_PROXY_DEPTH = env_int("TRUSTED_PROXY_DEPTH", 0)
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 8 * 3600)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
# behind HTTPS, set SECURE_COOKIES=true: cookies then never travel over plain HTTP
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", False)
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"

# --- services: broker, channel layer, cache ------------------------------------------
REDIS_URL = env_str("REDIS_URL")
DRAMATIQ_BROKER_URL = env_str("DRAMATIQ_BROKER_URL")

_dramatiq_middleware = [
    "dramatiq.middleware.AgeLimit",
    "dramatiq.middleware.TimeLimit",
    "dramatiq.middleware.Callbacks",
    "dramatiq.middleware.Retries",
    "django_dramatiq.middleware.DbConnectionsMiddleware",
    "jobs.sweeper.SweeperMiddleware",
]
if DRAMATIQ_BROKER_URL.startswith("amqp://"):
    DRAMATIQ_BROKER = {
        # one publishing connection per process, not one per request thread (marketplace/broker.py)
        "BROKER": "marketplace.broker.SharedConnectionRabbitmqBroker",
        "OPTIONS": {"url": DRAMATIQ_BROKER_URL},
        "MIDDLEWARE": _dramatiq_middleware,
    }
elif DRAMATIQ_BROKER_URL.startswith(("redis://", "rediss://")):
    DRAMATIQ_BROKER = {
        "BROKER": "dramatiq.brokers.redis.RedisBroker",
        # works, but its idle poll adds up to a second to a job that arrives alone
        # (ENVIRONMENT.md); RabbitMQ is the broker for dispatch latency
        "OPTIONS": {"url": DRAMATIQ_BROKER_URL},
        "MIDDLEWARE": _dramatiq_middleware,
    }
elif DRAMATIQ_BROKER_URL:
    raise ImproperlyConfigured("DRAMATIQ_BROKER_URL must start with amqp:// or redis://")
else:
    DRAMATIQ_BROKER = {
        "BROKER": "dramatiq.brokers.stub.StubBroker",
        "OPTIONS": {},
        "MIDDLEWARE": _dramatiq_middleware,
    }
# True when workers run inside the web process (runmarket on the embedded default)
DRAMATIQ_IN_PROCESS = not DRAMATIQ_BROKER_URL
DRAMATIQ_AUTODISCOVER_MODULES = ["tasks"]
# the queue this marketplace's actors use: several marketplaces may share one broker
DRAMATIQ_QUEUE = env_str("DRAMATIQ_QUEUE", "marketplace")

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "marketplace.redis_cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "marketplace"),
            # an unreachable Redis must cost a request milliseconds, not a hang: callers fail open
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 1.0},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
# live events and node frames (marketplace.live_bus): Redis pub/sub channels under this prefix
# with REDIS_URL, else inside the process. No Channels layer: consumers need none.
LIVE_BUS_PREFIX = env_str("CACHE_KEY_PREFIX", "marketplace")
# how long an API key lookup is cached (0: not at all); revoking a key drops it at once
API_KEY_CACHE_SECONDS = env_int("API_KEY_CACHE_SECONDS", 30)
# live streams (SSE and WebSocket) one API key may hold open on one web process (429 past it)
MAX_STREAMS_PER_KEY = env_int("MAX_STREAMS_PER_KEY", 200)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["marketplace.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_THROTTLE_CLASSES": ["marketplace.throttles.ApiKeyRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["marketplace.json_input.StrictJSONParser"],
    "EXCEPTION_HANDLER": "marketplace.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "marketplace.openapi.MarketplaceAutoSchema",
    "UNAUTHENTICATED_USER": None,
}
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("MAX_REQUEST_BYTES", 1024 * 1024)
# Daphne's deadlines for quiet peers (marketplace/web_server.py): a request must arrive whole
# this long after its first byte, and a client may leave a response undrained this long
HTTP_RECEIVE_SECONDS = env_int("HTTP_RECEIVE_SECONDS", 30)
HTTP_WRITE_STALL_SECONDS = env_int("HTTP_WRITE_STALL_SECONDS", 60)
SPECTACULAR_SETTINGS = {
    "TITLE": "Inference marketplace API",
    "DESCRIPTION": "Customer jobs (AITBC surface), private inference (B3IQ), billing, and the node-facing API. "
                   "Every error is {\"error\": {status, title, detail, code}}.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": "/v1",
    "APPEND_COMPONENTS": {
        "securitySchemes": {
            "nodeToken": {"type": "http", "scheme": "bearer", "description": "a node token from enrolment"},
        }
    },
}

# --- marketplace policy (defaults; staff override per customer in the admin) --------
RATE_LIMIT_PER_MINUTE = env_int("RATE_LIMIT_PER_MINUTE", 60)
RATE_LIMIT_PER_HOUR = env_int("RATE_LIMIT_PER_HOUR", 1000)
MAX_CONCURRENT_JOBS = env_int("MAX_CONCURRENT_JOBS", 20)
MAX_TIMEOUT_SECONDS = env_int("MAX_TIMEOUT_SECONDS", 24 * 3600)
JOB_QUEUE_TIMEOUT_SECONDS = env_int("JOB_QUEUE_TIMEOUT_SECONDS", 300)
# a private request may be sealed to expire at most this far ahead: the node keeps a replay
# cache for each key until the key retires, so requests must not outlive their keys by much
PRIVATE_REQUEST_MAX_TTL_SECONDS = env_int("PRIVATE_REQUEST_MAX_TTL_SECONDS", 24 * 3600)
JOB_MAX_ATTEMPTS = env_int("JOB_MAX_ATTEMPTS", 3)
NODE_HEARTBEAT_SECONDS = env_int("NODE_HEARTBEAT_SECONDS", 5)
NODE_OFFLINE_AFTER_SECONDS = env_int("NODE_OFFLINE_AFTER_SECONDS", 20)
NODE_AUTO_APPROVE = env_bool("NODE_AUTO_APPROVE", True)

# what a customer without funds is told to do: the marketplace's own way to pay it
FUNDING_HELP = env_str(
    "FUNDING_HELP",
    "Funds are added by the marketplace's staff: ask them for a deposit, and it shows here at once.",
)

# Infernet delegated subscriptions (the gateway): the EIP-712 domain they are signed for,
# and the adapter their results are delivered to (there is no chain here)
INFERNET_CHAIN_ID = env_int("INFERNET_CHAIN_ID", 31337)
INFERNET_COORDINATOR_ADDRESS = env_str("INFERNET_COORDINATOR_ADDRESS", "0x663F3ad617193148711d28f5334eE4Ed07016602")
SUBSCRIPTION_DELIVERER = env_str("SUBSCRIPTION_DELIVERER", "jobs.subscriptions.delivery.RecordingDeliverer")

# The node agent (nodes/agent) reads its own settings from its config file and
# command line; these are only its defaults when runnode is given none.
NODE_AGENT_STATE_DIR = Path(env_str("NODE_AGENT_STATE_DIR", str(VAR_DIR / "agent")))
NODE_AGENT_PORT = env_int("NODE_AGENT_PORT", 4000)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "filters": {"redact_api_keys": {"()": "marketplace.log_redaction.RedactApiKeys"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact_api_keys"]},
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO").upper()},
}
