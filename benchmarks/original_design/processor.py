"""The original design's processor: no consumer group, auto-commit, one HTTP request per event, as it is."""

import json
import os

import requests
from kafka import KafkaConsumer

consumer = KafkaConsumer(
    os.environ.get("LOGS_TOPIC", "logs"),
    bootstrap_servers=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"),
    auto_offset_reset="earliest",  # the benchmark's one change: read the preloaded events
    value_deserializer=lambda m: json.loads(m.decode("utf-8")),
)
url = os.environ.get("ML_SERVICE_URL", "http://localhost:8000") + "/predict"

for message in consumer:
    log = message.value
    response = requests.post(url, json=log)
    print(f"Log: {log}, Anomaly: {response.json()['anomaly']}", flush=True)
