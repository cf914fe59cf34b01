# The runkeys container action. The runner builds this at job setup (action.yml: image: Dockerfile)
# and runs it with the workspace mounted over the working directory, so nothing here relies on
# WORKDIR; no USER either (the runner's file commands need root). FACTS §4.
ARG BASE_IMAGE=python:3.12-slim
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The core and the provider drivers; not the service's extras (Flask, gunicorn, SQLAlchemy).
COPY . /opt/runkeys-src
RUN python3 -m venv /opt/runkeys \
 && /opt/runkeys/bin/pip install "/opt/runkeys-src[providers]" \
 && rm -rf /opt/runkeys-src \
 && /opt/runkeys/bin/python -c "import runkeys.issuance, action_src.main, psycopg, pymysql, redis"

# Exec form and an absolute path: the runner passes no shell, and `args` are not expanded.
ENTRYPOINT ["/opt/runkeys/bin/runkeys-action"]
