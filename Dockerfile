# Multi-stage image for the Airflow components and workers.
# Stage 1 builds the virtual environment; stage 2 carries only it, ffmpeg and the code.
FROM python:3.11-slim-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends build-essential && rm -rf /var/lib/apt/lists/*
COPY requirements.txt /tmp/requirements.txt
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt

FROM python:3.11-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends ffmpeg postgresql-client tini \
    && rm -rf /var/lib/apt/lists/* && useradd --create-home --uid 50000 transcode
COPY --from=build /opt/venv /opt/venv
WORKDIR /opt/transcode-flow
COPY --chown=transcode:transcode . .
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/opt/transcode-flow:/opt/transcode-flow/plugins \
    TRANSCODE_HOME=/opt/transcode-flow \
    AIRFLOW_HOME=/opt/airflow \
    AIRFLOW_CONFIG=/opt/transcode-flow/airflow.cfg
RUN mkdir -p /opt/airflow && chown transcode:transcode /opt/airflow
USER transcode
ENTRYPOINT ["/usr/bin/tini", "--", "airflow"]
