# The three Python services (target ml-service, processor or simulator), built with no registry and no PyPI:
# BASE_IMAGE is any Debian-like image with python3 and its venv module (the default is imported from a
# debootstrap root filesystem by scripts/images.py; python:3.11-slim fits too), and the wheels are resolved
# on the host into wheels/ of the build context. Everything runs as an unprivileged user.
ARG BASE_IMAGE=log-pipeline/debian-python:bookworm

FROM ${BASE_IMAGE} AS build
COPY wheels /wheels
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --no-index --find-links /wheels log-anomaly-pipeline \
 && /opt/venv/bin/pip uninstall -y -q pip \
 && find /opt/venv -name '__pycache__' -prune -exec rm -rf {} +

FROM ${BASE_IMAGE} AS app
COPY --from=build /opt/venv /opt/venv
COPY services /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    NUMBA_CACHE_DIR=/tmp/numba \
    KAFKA_BOOTSTRAP_SERVERS=kafka:9092
USER 10001:10001

FROM app AS ml-service
# A model trained at build time on the simulator's normal traffic; mount another one at MODEL_PATH.
USER 0:0
RUN mkdir -p /models && cd /app/fastapi-ml-service && python save_model.py --output /models/model.joblib \
 && chown -R 10001:10001 /models
USER 10001:10001
WORKDIR /app/fastapi-ml-service
ENV ML_HOST=0.0.0.0 ML_PORT=8000 MODEL_PATH=/models/model.joblib
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('ML_PORT', '8000')}/ready\", timeout=2)"]
CMD ["python", "main.py"]

FROM app AS processor
WORKDIR /app/processor
ENV ML_SERVICE_URL=http://ml-service:8000 PROCESSOR_METRICS_HOST=0.0.0.0 PROCESSOR_METRICS_PORT=9108
EXPOSE 9108
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('PROCESSOR_METRICS_PORT', '9108')}/health\", timeout=2)"]
CMD ["python", "main.py"]

FROM app AS simulator
WORKDIR /app/log-simulator
ENTRYPOINT ["python", "main.py"]
CMD ["--rate", "10"]
