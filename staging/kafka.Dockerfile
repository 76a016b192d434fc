# Apache Kafka in KRaft mode from the same Maven jars as the local broker (kafka-docker/pom.xml), no registry:
# BASE_IMAGE is any Debian-like image with a Java 17+ runtime (the default is imported from a debootstrap
# root filesystem by scripts/images.py; eclipse-temurin:17-jre fits too). Runs as an unprivileged user.
ARG BASE_IMAGE=log-pipeline/debian-java:bookworm
FROM ${BASE_IMAGE}
COPY libs /opt/kafka/libs
COPY log4j2.yaml log4j2-tools.yaml kafka-entrypoint.sh /opt/kafka/
ENV KAFKA_HEAP_OPTS=-Xmx384m \
    KAFKA_DATA_DIR=/var/lib/kafka/data \
    KAFKA_NODE_ID=1 \
    KAFKA_PROCESS_ROLES=broker,controller \
    KAFKA_LISTENERS=PLAINTEXT://:9092,CONTROLLER://:9093 \
    KAFKA_ADVERTISED_LISTENERS=PLAINTEXT://kafka:9092 \
    KAFKA_CONTROLLER_LISTENER_NAMES=CONTROLLER \
    KAFKA_LISTENER_SECURITY_PROTOCOL_MAP=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT \
    KAFKA_CONTROLLER_QUORUM_VOTERS=1@kafka:9093 \
    KAFKA_NUM_PARTITIONS=3 \
    KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS=0
USER 0:0
RUN mkdir -p /var/lib/kafka/data && chown -R 10001:10001 /var/lib/kafka && chmod 0755 /opt/kafka/kafka-entrypoint.sh
USER 10001:10001
VOLUME /var/lib/kafka/data
EXPOSE 9092 9093
# Ready when the broker answers the admin API on its own listener (Kafka's own tool, from the same jars).
HEALTHCHECK --interval=10s --timeout=20s --start-period=120s --retries=6 \
  CMD ["/opt/kafka/kafka-entrypoint.sh", "health"]
ENTRYPOINT ["/opt/kafka/kafka-entrypoint.sh"]
CMD ["start"]
