# The `db` service: Debian's PostgreSQL on the same base image as the rest (no image
# registry needed, only Debian's packages). Runs as `sandbar`, like every Sandbar service;
# its data lives in the named volume mounted at /var/lib/sandbar-db.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}
RUN apt-get update -q \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql \
    && pg_dropcluster --stop "$(ls /usr/lib/postgresql)" main \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --create-home --home-dir /app --uid 10001 --user-group sandbar \
    && mkdir -p /var/lib/sandbar-db \
    && chown sandbar:sandbar /var/lib/sandbar-db
COPY docker/db-entrypoint.sh /usr/local/bin/sandbar-db
USER sandbar
EXPOSE 5432
CMD ["sandbar-db"]
