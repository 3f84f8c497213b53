# The one image behind the api, worker and migrate services of docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# Named paths rather than `COPY . .`, so .env, .venv and var/ never end up in the image.
COPY pyproject.toml README.md ./
COPY pushsvc ./pushsvc
COPY workers ./workers
COPY audiences ./audiences
COPY templates ./templates
# Editable, so the settings' defaults (audiences/ and templates/ beside the package) resolve inside /app.
RUN pip install -e . \
 && useradd --system --uid 10001 --no-create-home --home-dir /app pushsvc

USER pushsvc
EXPOSE 8080
ENTRYPOINT ["pushsvc"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
