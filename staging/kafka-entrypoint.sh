#!/bin/sh
# The broker container: every KAFKA_* variable (but the few below) becomes a line of server.properties,
# as in Apache's own image: KAFKA_LOG_RETENTION_HOURS=24 -> log.retention.hours=24. The storage is
# formatted on the first start with CLUSTER_ID (all nodes of a cluster share it).
set -eu
CP="/opt/kafka/libs/*"
LOG4J="-Dlog4j2.configurationFile=/opt/kafka/log4j2.yaml"
PROPS=/tmp/server.properties

if [ "${1:-start}" = "health" ]; then
  exec java -Xmx64m -XX:TieredStopAtLevel=1 "$LOG4J" -cp "$CP" org.apache.kafka.tools.BrokerApiVersionsCommand \
    --bootstrap-server "localhost:${KAFKA_HEALTH_PORT:-9092}" > /dev/null
fi

: "${CLUSTER_ID:?set CLUSTER_ID: the same 22-character id on every node (kafka-storage random-uuid)}"
env | sort | while IFS='=' read -r name value; do
  case "$name" in
    KAFKA_HEAP_OPTS|KAFKA_DATA_DIR|KAFKA_HEALTH_PORT|KAFKA_JVM_OPTS) ;;
    KAFKA_*) key=$(echo "${name#KAFKA_}" | tr 'A-Z_' 'a-z.'); echo "$key=$value" ;;
  esac
done > "$PROPS"
echo "log.dirs=$KAFKA_DATA_DIR" >> "$PROPS"

if [ ! -f "$KAFKA_DATA_DIR/meta.properties" ]; then
  java -Xmx128m "$LOG4J" -cp "$CP" kafka.tools.StorageTool format --cluster-id "$CLUSTER_ID" --config "$PROPS" \
    --ignore-formatted
fi
# shellcheck disable=SC2086  # the options are words
exec java $KAFKA_HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true ${KAFKA_JVM_OPTS:-} \
  "$LOG4J" -cp "$CP" kafka.Kafka "$PROPS"
