# invoiced-keap as a container: `run` (polls, webhook receivers, status page, /metrics, /healthz) as a non-root
# user, the state (SQLite database, Keap OAuth tokens) on the /data volume. Listening beyond the container's
# loopback needs INVOICED_KEAP_STATUS_TOKEN (the status page asks for it); see README "Install on a server".
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin invoiced-keap \
    && mkdir -p /data && chown 10001 /data

USER 10001
WORKDIR /data
VOLUME ["/data"]
# hadolint ignore=DL3064
ENV INVOICED_KEAP_DATABASE_URL=sqlite:////data/invoiced-keap.db \
    KEAP_TOKEN_FILE=/data/keap-tokens.json \
    INVOICED_KEAP_HOST=0.0.0.0 \
    INVOICED_KEAP_PORT=8780
EXPOSE 8780
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen(f\"http://127.0.0.1:{os.environ['INVOICED_KEAP_PORT']}/healthz\", timeout=5)"]
ENTRYPOINT ["invoiced-keap", "--log-format", "json", "--log-level", "INFO"]
CMD ["run"]
