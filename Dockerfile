# The API image: the whole package (API, `podrelay` CLI, simulator, Flower), as a non-root user.
#   docker build -t podrelay .
# BASE_IMAGE: any Debian-based image with Python 3.11+ and its venv module. Pin it by digest for
# reproducible builds (`--build-arg BASE_IMAGE=python:3.11-slim@sha256:…`). Everything goes into
# a virtualenv, so a distribution's "externally managed" Python works as well as the default.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
WORKDIR /src
RUN python3 -m venv /opt/venv

# Dependencies first, read from pyproject.toml's pins, so code changes reuse this layer.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
    && pip install -r requirements.txt

# The package as a wheel (migrations and static files included); installed in the next stage.
COPY README.md ./
COPY app ./app
RUN pip wheel --no-deps --wheel-dir /wheels .
# The Python SDK, which `podrelay generate|status|cancel` use (its dependencies are above).
COPY clients/python ./clients/python
RUN pip wheel --no-deps --wheel-dir /wheels ./clients/python

FROM ${BASE_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH

WORKDIR /app
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /app podrelay

COPY --from=build /opt/venv /opt/venv
COPY --from=build /wheels /tmp/wheels
RUN pip install --no-deps --no-index /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels \
    && mkdir -p /app/data /app/logs \
    && chown podrelay:podrelay /app/data /app/logs

USER podrelay
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", "8000"]
