# The web, worker and beat image. Build: docker build -t scrm .  (docker-compose.yml does it for you)
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends gettext \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 scrm

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY --chown=scrm:scrm . .
# Static files are collected at build time and served by WhiteNoise; translations are compiled.
RUN SECRET_KEY=build-only DEBUG=0 ALLOWED_HOSTS=localhost python manage.py collectstatic --no-input -v0 \
    && python manage.py compilemessages --ignore=.venv -v0

USER scrm
EXPOSE 8000
CMD ["gunicorn", "scrm.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "4", "--access-logfile", "-"]
