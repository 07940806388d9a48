"""orderdash settings: every value comes from the environment, with local defaults.

A bad value (say `DEBUG=maybe`) stops the process at start instead of being guessed at.
"""

import os
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.getenv("ORDERDASH_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def envbool(name: str, default: str) -> bool:
    value = os.getenv(name, default).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}")


def envint(name: str, default: str) -> int:
    value = os.getenv(name, default)
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}") from None


def envfloat(name: str, default: str) -> float:
    value = os.getenv(name, default)
    try:
        return float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {value!r}") from None


def envlist(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.getenv(name, default).split(",") if item.strip()]


def envstuck(name: str, defaults: dict[str, int]) -> dict[str, int]:
    """Seconds per step before the board marks an order on it as stuck: one number for
    every step, or `step=seconds` pairs over the defaults (`payment=300,sms=60`)."""
    value = os.getenv(name, "").strip()
    if not value:
        return dict(defaults)
    if value.isdigit():
        return dict.fromkeys(defaults, int(value))
    limits = dict(defaults)
    for pair in value.split(","):
        step, _, seconds = pair.partition("=")
        if step.strip() not in defaults or not seconds.strip().isdigit():
            raise ImproperlyConfigured(
                f"{name} must be a number of seconds or step=seconds pairs for the steps"
                f" {', '.join(defaults)}; {pair.strip()!r} is neither"
            )
        limits[step.strip()] = int(seconds)
    return limits


DEBUG = envbool("DEBUG", "true")
SECRET_KEY = os.getenv("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = "orderdash-local-development-only"  # noqa: S105 - never used with DEBUG off

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1],testserver")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", "")

# HTTPS, for a deployment behind a TLS proxy. Off by default, as `make run` serves plain
# http; docker-compose.yml turns them on (`manage.py check --deploy` then warns of nothing).
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", "false")
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", "0")
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", "false")
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", "false")
SESSION_COOKIE_SECURE = envbool("SESSION_COOKIE_SECURE", "false")
CSRF_COOKIE_SECURE = envbool("CSRF_COOKIE_SECURE", "false")


def envheader(name: str) -> tuple[str, str] | None:
    """`HEADER,value` (say `X-Forwarded-Proto,https`) as Django's (META key, value)."""
    value = os.getenv(name, "").strip()
    if not value:
        return None
    header, _, expected = (part.strip() for part in value.partition(","))
    if not header or not expected:
        raise ImproperlyConfigured(f"{name} must be HEADER,value (X-Forwarded-Proto,https)")
    return "HTTP_" + header.upper().replace("-", "_"), expected


# Only behind a proxy that sets this header on every request (and drops a client's own):
# Django then takes such a request as HTTPS.
SECURE_PROXY_SSL_HEADER = envheader("SECURE_PROXY_SSL_HEADER")
if SECURE_HSTS_SECONDS < 0:
    raise ImproperlyConfigured("SECURE_HSTS_SECONDS must be 0 (off) or more")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "channels",
    "csp",
    "orders.simulator",
    "orders",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files from the web process itself, by exact name: a path outside them
    # (say /static/../x) is a plain 404.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "orders.access.DemoOrLoginRequiredMiddleware",
]

ROOT_URLCONF = "orderdash.urls"
ASGI_APPLICATION = "orderdash.asgi.application"

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
                "orders.context_processors.temporal_links",
            ],
        },
    },
]

# SQLite is shared by the web process and the worker: WAL plus IMMEDIATE transactions
# turn "database is locked" into a short wait.
SQLITE_OPTIONS = {
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    "transaction_mode": "IMMEDIATE",
    "timeout": 20,
}
DATABASE_URL = os.getenv("DATABASE_URL", "")
# SQLite connections are kept between activities and the live hub's rounds (a new
# connection per activity was a large part of the worker's cost); stale ones are closed
# and reopened. A web request's own connection is closed when the request ends
# (orderdash/db.py). PostgreSQL's are pooled instead (DB_POOL_MAX_SIZE below).
CONN_MAX_AGE = envint("DB_CONN_MAX_AGE", "600")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=CONN_MAX_AGE)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "orderdash.sqlite3",
            "OPTIONS": SQLITE_OPTIONS,
            "CONN_MAX_AGE": CONN_MAX_AGE,
            # A file, not memory: tests run daphne and workers in other processes.
            "TEST": {"NAME": VAR_DIR / "test-orderdash.sqlite3"},
        }
    }
USING_SQLITE = DATABASES["default"]["ENGINE"].endswith("sqlite3")
if USING_SQLITE:
    DATABASES["default"]["OPTIONS"] = SQLITE_OPTIONS | DATABASES["default"].get("OPTIONS", {})

REDIS_URL = os.getenv("REDIS_URL", "")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # Each socket's receive blocks in Redis for up to 5 s (BZPOPMIN); redis-py 8's
            # default 5 s socket timeout then cut it, killing the socket. Longer than the
            # blocking read, still short enough to notice a Redis that went away.
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 30}]},
        }
    }
else:
    # One web process: Channels' own in-memory layer. A socket that stops reading loses
    # messages past this many; the next fragment it gets is a whole one again.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": envint("CHANNEL_CAPACITY", "100")},
        }
    }

# Each distinct filtered board a web process shows live is rendered again on every change:
# past this many, a socket asking for one more is told so and not updated.
LIVE_BOARDS_MAX = envint("LIVE_BOARDS_MAX", "50")
if LIVE_BOARDS_MAX < 1:
    raise ImproperlyConfigured("LIVE_BOARDS_MAX must be at least 1")

TEMPORAL_ADDRESS = os.getenv("TEMPORAL_ADDRESS", "127.0.0.1:7233")
TEMPORAL_NAMESPACE = os.getenv("TEMPORAL_NAMESPACE", "default")
TEMPORAL_TASK_QUEUE = os.getenv("TEMPORAL_TASK_QUEUE", "orders")
TEMPORAL_UI_URL = os.getenv(
    "TEMPORAL_UI_URL", f"http://127.0.0.1:{envint('TEMPORAL_UI_PORT', '8233')}"
).rstrip("/")
# How long a page waits on Temporal before saying it is unreachable (seconds).
TEMPORAL_RPC_TIMEOUT = envfloat("TEMPORAL_RPC_TIMEOUT", "2")
# Orders of this amount or more wait, their stock reserved, for an operator's approval.
APPROVAL_THRESHOLD_CENTS = envint("APPROVAL_THRESHOLD_CENTS", "100000")
# Nobody decided within this long: the order is rejected (and undone), with that reason.
APPROVAL_TIMEOUT_SECONDS = envint("APPROVAL_TIMEOUT_SECONDS", "3600")
if APPROVAL_TIMEOUT_SECONDS < 1 or APPROVAL_THRESHOLD_CENTS < 0:
    raise ImproperlyConfigured(
        "APPROVAL_TIMEOUT_SECONDS must be at least 1, APPROVAL_THRESHOLD_CENTS at least 0"
    )
# The board marks an order stuck when it has been on its current step (retries included)
# longer than this. The defaults leave room for a step's whole retry schedule.
STUCK_AFTER_SECONDS = envstuck(
    "STUCK_AFTER_SECONDS",
    {"inventory": 60, "payment": 60, "commit": 60, "shipping": 60, "email": 120, "sms": 120},
)
# How long placing an order waits for Temporal to take it; past that the order stays
# queued and the starter starts it when Temporal answers.
TEMPORAL_START_WAIT = envfloat("TEMPORAL_START_WAIT", "1")
# An order queued longer than this makes `audit` fail: the starter should have started it.
QUEUED_LIMIT_SECONDS = envint("QUEUED_LIMIT_SECONDS", "600")
# How often the starter looks for queued orders, and reconciles running ones with Temporal.
STARTER_EVERY_SECONDS = envfloat("STARTER_EVERY_SECONDS", "2")
# Put before every workflow id (`order-<n>`): databases sharing one Temporal namespace
# (test databases, a staging copy) then never collide on an order number.
TEMPORAL_WORKFLOW_ID_PREFIX = os.getenv("TEMPORAL_WORKFLOW_ID_PREFIX", "")
# Whether make run / run_stack starts the embedded dev server: only when no address is set.
TEMPORAL_EMBEDDED = "TEMPORAL_ADDRESS" not in os.environ
TEMPORAL_UI_PORT = envint("TEMPORAL_UI_PORT", "8233")
# A live worker re-polls at least this often when the server's long-poll interval is
# short (run_stack starts the dev server with matching.longPollExpirationInterval=2s).
WORKER_POLLER_STALE_SECONDS = envfloat("WORKER_POLLER_STALE_SECONDS", "5")
# Activities running at once per worker. SQLite takes one writer at a time: more threads
# only queue on its lock (and miss heartbeats); PostgreSQL takes more.
WORKER_ACTIVITY_THREADS = envint("WORKER_ACTIVITY_THREADS", "8" if USING_SQLITE else "16")
# On PostgreSQL each process borrows its connections from a pool of its own (psycopg's),
# and Django hands a connection back where it would close it. Without one, a connection
# per web request costs PostgreSQL a new backend process each time (under daphne a kept
# connection would outlive its request's thread: orderdash/db.py). Big enough for every
# activity thread at once, plus the order starter and the local activities.
DB_POOL_MAX_SIZE = envint("DB_POOL_MAX_SIZE", str(WORKER_ACTIVITY_THREADS + 4))
# How long a thread waits for a free pooled connection before its work fails.
DB_POOL_TIMEOUT = envfloat("DB_POOL_TIMEOUT", "10")
if DATABASES["default"]["ENGINE"].endswith("postgresql"):
    if DB_POOL_MAX_SIZE < WORKER_ACTIVITY_THREADS + 2:
        # Said at start: short of connections, attempts would wait DB_POOL_TIMEOUT for one
        # and run past their own timeout instead.
        raise ImproperlyConfigured(
            f"DB_POOL_MAX_SIZE ({DB_POOL_MAX_SIZE}) must be at least WORKER_ACTIVITY_THREADS"
            f" + 2 ({WORKER_ACTIVITY_THREADS + 2}): every activity thread, the order starter"
            " and the order's own records each hold a connection at once."
        )
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # kept by the pool instead
    # A connection is checked as it leaves the pool: one that a restarted server dropped
    # is replaced, not handed to a request.
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 2,
        "max_size": DB_POOL_MAX_SIZE,
        "timeout": DB_POOL_TIMEOUT,
    }
# Long enough for the dashboard to show the worker down (it calls a worker down after a
# few seconds without polls), short enough that the interrupted order resumes within seconds.
WORKER_RESTART_PAUSE = envfloat("WORKER_RESTART_PAUSE", "6")
# Where `make run` serves the dashboard.
HOST = os.getenv("HOST", "127.0.0.1")
PORT = envint("PORT", "8000")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
# Demo mode: anyone may place orders, flip switches and act, and the page says so. Off:
# every page and socket needs a login, and acting needs the "operators" group. Unset, it
# follows DEBUG: on for `make run`, off in production (docker compose sets it off too).
DEMO_MODE = envbool("DEMO_MODE", "true" if DEBUG else "false")
# Outside demo mode, Prometheus reads /metrics with "Authorization: Bearer <this>". Unset:
# /metrics needs a logged-in user, like every page.
METRICS_TOKEN = os.getenv("METRICS_TOKEN", "")
# The worker serves the Temporal SDK's own metrics (temporal_*) for Prometheus on this
# port, at /metrics; unset or 0: off. The host is 127.0.0.1 unless set (0.0.0.0 in compose).
WORKER_METRICS_PORT = envint("WORKER_METRICS_PORT", "0") if os.getenv("WORKER_METRICS_PORT") else 0
WORKER_METRICS_HOST = os.getenv("WORKER_METRICS_HOST", "127.0.0.1")
if not 0 <= WORKER_METRICS_PORT <= 65535:
    raise ImproperlyConfigured(
        f"WORKER_METRICS_PORT must be a port number, not {WORKER_METRICS_PORT}"
    )
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "orders:dashboard"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# collectstatic's output (production); WhiteNoise serves it when it is there.
STATIC_ROOT = Path(os.getenv("STATIC_ROOT", BASE_DIR / "staticfiles"))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# With DEBUG on (`make run`, the tests) static files are served from the source folders,
# so no collectstatic is needed. With DEBUG off only what collectstatic wrote is served,
# under content-hashed names (cached for ever by browsers); a missing file is an error
# at render time, not a silent 404.
WHITENOISE_USE_FINDERS = DEBUG
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Content security policy, everywhere (the browser tests run under it): scripts, styles,
# sockets and forms from this site only; no inline script, style or event handler (the
# templates have none, and htmx's own indicator style is off, see base.html).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        # Style attributes only (never <style> elements): the order timeline places each
        # attempt on its clock with a computed left/width.
        "style-src-attr": [UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        # htmx's websocket extension: same host, ws:// or wss://.
        "connect-src": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
        "base-uri": [NONE],
        "object-src": [NONE],
    }
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.getenv("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.channels.server": {"level": "WARNING"},
        "temporalio": {"level": "WARNING"},
        # Every failed attempt is in the ledger and on the page; no traceback per retry.
        "temporalio.activity": {"level": "ERROR"},
    },
}
