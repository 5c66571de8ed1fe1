# monitor in a container: `monitor run` with the HTTP side (/healthz, pages, API) on port 8080.
#
#   docker build -t monitor .
#   docker run -d --name monitor -p 127.0.0.1:8080:8080 \
#       -v monitor-data:/data -v "$PWD/contrib/monitor.toml:/data/monitor.toml:ro" \
#       -e MONITOR_HTTP_TOKEN monitor
#
# The config is /data/monitor.toml (MONITOR_CONFIG): mount one there, e.g. contrib/monitor.toml.
# None is written for you; without it `monitor` stops with a config error. Its
# `database = "monitor.db"` is relative to the config file, so the database lives on the /data
# volume and survives a new image (migrations run on open). contrib/compose.yaml does all this.

ARG PYTHON_IMAGE=python:3.11-slim

# --- build: the wheel, and a venv with it and its dependencies ---------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Only what the wheel is made of (pyproject.toml's readme, packages and force-include).
COPY pyproject.toml README.md ./
COPY monitor/ monitor/
COPY rules/ rules/
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir /wheels/*.whl

# --- run: the venv on a slim Python, no build tools, no root -----------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="monitor" \
      org.opencontainers.image.description="Package-health bot: watches djangopackages.org, PyPI, GitHub and OSV and alerts on change." \
      org.opencontainers.image.source="https://github.com/monitor-bot/monitor" \
      org.opencontainers.image.licenses="MIT"
RUN groupadd --system --gid 10001 monitor \
    && useradd --system --uid 10001 --gid monitor --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin monitor \
    && mkdir /data \
    && chown monitor:monitor /data
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MONITOR_CONFIG=/data/monitor.toml
WORKDIR /data
# Declared after the chown, so a new named volume starts out owned by the monitor user.
VOLUME ["/data"]
USER 10001:10001
EXPOSE 8080
# /healthz needs no token; it is 200 while the scheduler ticks and the database answers.
# slim has no curl: Python's urllib raises (exit 1) on a 503 or no answer. It calls port 8080,
# the one CMD serves on: change both together.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
# `monitor run` stops within 5 s on SIGTERM with exit 0 (docker stop waits 10 s).
STOPSIGNAL SIGTERM
ENTRYPOINT ["monitor"]
CMD ["run", "--http", "0.0.0.0:8080", "--log-format", "json"]
