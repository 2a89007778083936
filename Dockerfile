# One image for every Sandbar service (router, topics, bridge, api).
#
# BASE_IMAGE is any Debian-based image with python3 (3.11 or 3.12) and python3-venv:
# the official slim image by default, or a local one where no registry is reachable
# (docker/base-image.sh builds one with debootstrap). Only `python3` is assumed, not `python`.
# Works with the classic builder and BuildKit alike (no RUN --mount).
ARG BASE_IMAGE=python:3.11-slim-bookworm

# --- build: a virtualenv with Sandbar and its dependencies ----------------------------
FROM ${BASE_IMAGE} AS build
# Extra CA certificates for builds behind a TLS-intercepting proxy: *.crt (PEM) files in
# docker/ca-certificates/ (empty in the repository) are trusted by pip here.
COPY docker/ca-certificates/ /usr/local/share/ca-certificates/
RUN update-ca-certificates >/dev/null
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
RUN python3 -m venv /opt/venv
WORKDIR /src
# Dependencies first, from pyproject.toml alone, so editing the code rebuilds in seconds.
COPY pyproject.toml ./
# The dependencies and the PostgreSQL driver (the `postgres` extra).
RUN python3 -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; print("\n".join(p["dependencies"] + p["optional-dependencies"]["postgres"]))' \
        > requirements.txt \
    && /opt/venv/bin/pip install --quiet -r requirements.txt
COPY README.md ./
COPY sandbar/ sandbar/
COPY api/ api/
COPY bridge/ bridge/
COPY topics/ topics/
RUN /opt/venv/bin/pip install --quiet --no-deps . \
    && /opt/venv/bin/pip uninstall --quiet --yes pip

# --- runtime: the base image, the virtualenv, the router template and the demo page --
FROM ${BASE_IMAGE}
COPY --from=build /usr/local/share/ca-certificates/ /usr/local/share/ca-certificates/
COPY --from=build /etc/ssl/certs/ /etc/ssl/certs/
RUN useradd --system --create-home --home-dir /app --uid 10001 --user-group sandbar \
    && mkdir -p /data /app/.sandbar /keys \
    && chown sandbar:sandbar /data /app/.sandbar /keys \
    && chmod 700 /keys
COPY --from=build /opt/venv /opt/venv
COPY .crossbar/config.yaml /app/.crossbar/config.yaml
COPY config/ /app/config/
COPY web/ /app/web/
ENV PATH=/opt/venv/bin:$PATH \
    SANDBAR_ROOT=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
USER sandbar
CMD ["sandbar", "--help"]
