# One image for every Sandbar service (router, topics, bridge, api).
# BASE_IMAGE can point at a locally built image where no registry is reachable.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
# Extra CA certificates (for builds behind a TLS-intercepting proxy): put *.crt
# files in docker/ca-certificates/; the folder is empty in the repository.
COPY docker/ca-certificates/ /usr/local/share/ca-certificates/
RUN (command -v update-ca-certificates >/dev/null && update-ca-certificates) || true
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt PIP_CERT=/etc/ssl/certs/ca-certificates.crt
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY sandbar/ sandbar/
COPY api/ api/
COPY bridge/ bridge/
COPY topics/ topics/
RUN /opt/venv/bin/pip install .

FROM ${BASE_IMAGE}
RUN useradd --system --create-home --home-dir /app --uid 10001 sandbar \
    && mkdir -p /data /app/.sandbar && chown sandbar /data /app/.sandbar
COPY --from=build /opt/venv /opt/venv
COPY .crossbar/ /app/.crossbar/
COPY config/ /app/config/
COPY web/ /app/web/
ENV PATH=/opt/venv/bin:$PATH SANDBAR_ROOT=/app PYTHONUNBUFFERED=1
WORKDIR /app
USER sandbar
