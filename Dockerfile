# syntax=docker/dockerfile:1.7
# Tailor API / trainer image: build wheels in one stage, install only runtime dependencies in the next.
# The entry point is gunicorn serving the API; the trainer overrides it (`entrypoint: ["tailor"]`).

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update && apt-get install -y --no-install-recommends build-essential && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY tailor ./tailor
COPY service ./service
COPY training ./training
COPY scoring ./scoring
COPY redis_state ./redis_state
COPY settings ./settings
RUN pip wheel --wheel-dir /wheels .

FROM python:3.11-slim AS runtime
# One BLAS/OpenMP thread per process: the API scales with gunicorn workers, not with BLAS pools.
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 OMP_NUM_THREADS=1 \
    TAILOR_BIND=0.0.0.0:8000 PROMETHEUS_MULTIPROC_DIR=/tmp/tailor-metrics
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 tailor \
    && mkdir -p /var/lib/tailor/models /data && chown tailor:tailor /var/lib/tailor/models
COPY --from=build /wheels /wheels
RUN pip install --no-index --find-links=/wheels tailor && rm -rf /wheels
USER tailor
WORKDIR /home/tailor
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"]
ENTRYPOINT ["gunicorn", "-c", "python:service.gunicorn_conf", "service.wsgi:app"]
