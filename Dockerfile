# orderdash: one image for the web process (daphne), the Temporal worker and the one-shot
# management commands. docker-compose.yml picks the command for each service.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    DJANGO_SETTINGS_MODULE=orderdash.settings \
    ORDERDASH_VAR_DIR=/app/var

WORKDIR /app

# Dependencies first, so a code change does not reinstall them.
COPY requirements.txt ./
RUN pip install -r requirements.txt

# Only the application, listed one by one: no local virtualenv, SQLite files or .env
# end up in the image.
COPY manage.py ./
COPY orderdash/ orderdash/
COPY orders/ orders/
COPY worker/ worker/
COPY templates/ templates/
COPY static/ static/

# Static files under content-hashed names, served by WhiteNoise from the web process. The
# key here only lets settings load for collectstatic (DEBUG off picks hashed storage).
RUN DEBUG=false SECRET_KEY=collectstatic-only python manage.py collectstatic --no-input -v0

# Run as an unprivileged user. Settings create ORDERDASH_VAR_DIR at import, so it must be
# writable; nothing else is.
RUN useradd --system --uid 10001 --no-create-home --home-dir /app orderdash \
    && mkdir -p /app/var \
    && chown orderdash /app/var
USER orderdash

EXPOSE 8000
CMD ["python", "-m", "orderdash.web", "-b", "0.0.0.0", "-p", "8000", "orderdash.asgi:application"]
