# The coda-sync worker. Build with `docker build -t coda-sync .`, or let docker-compose.yml do it.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Install the dependencies from pyproject.toml and an empty package first, so that a change to
# the code reuses this layer instead of installing every dependency again.
COPY pyproject.toml README.md ./
RUN mkdir worker \
    && touch worker/__init__.py \
    && pip install . \
    && pip uninstall --yes coda-sync \
    && rm -rf worker build ./*.egg-info

COPY worker ./worker
RUN pip install --no-deps . && rm -rf build ./*.egg-info

# The worker runs as an unprivileged user; it writes only its instance id (for the health
# check) to CODA_SYNC_DATA_DIR.
RUN groupadd --system --gid 10001 coda-sync \
    && useradd --system --uid 10001 --gid coda-sync --no-create-home \
        --home-dir /var/lib/coda-sync --shell /usr/sbin/nologin coda-sync \
    && mkdir -p /var/lib/coda-sync /app/config \
    && chown coda-sync:coda-sync /var/lib/coda-sync

ENV CODA_SYNC_DATA_DIR=/var/lib/coda-sync \
    CODA_SYNC_CONFIG=/app/config/jobs.toml \
    CODA_SYNC_LOG_FORMAT=json

USER 10001:10001

# `coda-sync health` exits 1 when this container's worker has not written its heartbeat for
# CODA_SYNC_HEALTH_MAX_AGE seconds (default 60) or PostgreSQL does not answer.
HEALTHCHECK --interval=30s --timeout=15s --start-period=60s --retries=3 \
    CMD ["coda-sync", "health"]

ENTRYPOINT ["coda-sync"]
CMD ["run"]
