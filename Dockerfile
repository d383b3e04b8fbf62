FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
# Only what production runs: requirements.lock has the app's dependencies, none of the tests' or
# tools' (those are in requirements-dev.lock, which .venv installs).
COPY requirements.lock .
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
COPY . .
# collectstatic needs settings to load; these throwaway values exist only during the build.
RUN DEBUG=0 SECRET_KEY=build-only ALLOWED_HOSTS=build STRIPE_WEBHOOK_SECRET=build \
    BILLING_GATEWAY=sandbox python manage.py collectstatic --noinput
RUN useradd --create-home kilo && chown -R kilo /app
USER kilo
EXPOSE 8000
# The same server command as `make serve` (config/gunicorn.py), listening beyond the container.
ENV GUNICORN_BIND=0.0.0.0:8000
CMD ["gunicorn", "--config", "config/gunicorn.py", "config.wsgi"]
