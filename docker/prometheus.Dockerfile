# The `prometheus` service (compose profile `observability`): Debian's Prometheus on the
# same base image as the rest (no image registry needed, only Debian's packages), scraping
# every Sandbar service inside the compose network (docker/prometheus.yml).
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}
RUN apt-get update -q \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /var/lib/sandbar-prometheus \
    && chown prometheus:prometheus /var/lib/sandbar-prometheus
COPY docker/prometheus.yml /etc/sandbar/prometheus.yml
USER prometheus
EXPOSE 9090
CMD ["prometheus", "--config.file=/etc/sandbar/prometheus.yml", \
     "--storage.tsdb.path=/var/lib/sandbar-prometheus", "--web.listen-address=0.0.0.0:9090"]
