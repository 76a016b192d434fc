# Prometheus and Alertmanager (target prometheus or alertmanager) from Debian's own packages, no registry:
# scripts/images.py downloads prometheus and prometheus-alertmanager with the host's apt into debs/, and they are
# unpacked here without running their maintainer scripts (no systemd, no service user). BASE_IMAGE is the same
# Debian base as the Python images (its python3 runs the healthchecks). Both run as an unprivileged user.
ARG BASE_IMAGE=log-pipeline/debian-python:bookworm

FROM ${BASE_IMAGE} AS unpack
COPY debs /debs
RUN mkdir /unpacked && for deb in /debs/*.deb; do dpkg-deb -x "$deb" /unpacked; done

FROM ${BASE_IMAGE} AS prometheus
COPY --from=unpack /unpacked/usr/bin/prometheus /usr/bin/prometheus
COPY --from=unpack /unpacked/usr/share/prometheus/web /usr/share/prometheus/web
# prometheus.yml is monitoring/'s with the compose services as targets (written by scripts/images.py).
COPY prometheus.yml rules.yml /etc/prometheus/
USER 0:0
RUN mkdir -p /prometheus && chown 10001:10001 /prometheus
USER 10001:10001
VOLUME /prometheus
EXPOSE 9090
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9090/-/ready', timeout=2)"]
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus", "--web.listen-address=:9090"]

FROM ${BASE_IMAGE} AS alertmanager
COPY --from=unpack /unpacked/usr/bin/prometheus-alertmanager /usr/bin/prometheus-alertmanager
COPY --from=unpack /unpacked/usr/share/prometheus/alertmanager /usr/share/prometheus/alertmanager
COPY alertmanager.yml /etc/alertmanager/
USER 0:0
RUN mkdir -p /alertmanager && chown 10001:10001 /alertmanager
USER 10001:10001
VOLUME /alertmanager
# Inside its container Alertmanager keeps its usual 9093; the host sees it on 9193 (compose.yml), as with
# `make monitoring-up`, since 9093 is the local Kafka's controller port there.
EXPOSE 9093
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9093/-/ready', timeout=2)"]
ENTRYPOINT ["/usr/bin/prometheus-alertmanager"]
CMD ["--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager", \
     "--web.listen-address=:9093", "--cluster.listen-address="]
