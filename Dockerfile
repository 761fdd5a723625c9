# The API image: the whole package (API, `podrelay` CLI, simulator, Flower), as a non-root user.
#   docker build -t podrelay .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /app podrelay

# Dependencies first, read from pyproject.toml's pins, so code changes reuse this layer.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The Python SDK, which `podrelay generate|status|cancel` use (its dependencies are above).
COPY clients/python ./clients/python
RUN pip install --no-deps ./clients/python && rm -rf ./clients

COPY app ./app
# Editable: a built wheel would leave out app/migrations (a directory without __init__.py).
RUN pip install --no-deps -e . \
    && mkdir -p /app/data /app/logs \
    && chown podrelay:podrelay /app/data /app/logs

USER podrelay
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", "8000"]
