# The runkeys container action. The runner builds this at job setup (action.yml: image: Dockerfile)
# and runs it with the workspace mounted over the working directory, so nothing here relies on
# WORKDIR; no USER either (the runner's file commands need root):
# https://docs.github.com/en/actions/sharing-automations/creating-actions/dockerfile-support-for-github-actions
#
# BASE_IMAGE: by default the python-base stage, an exact release of the official Python image.
# Its tag is in a FROM line because Dependabot reads no ARG defaults
# (https://github.com/dependabot/dependabot-core/issues/2057). Any Debian-like image with python3
# (3.11+) and its venv module can be given instead; scripts/base-image.sh makes one locally.
ARG BASE_IMAGE=python-base
FROM python:3.12.13-slim-trixie AS python-base

# Stage 1: the locked dependencies, by hash and as wheels only (nothing is compiled), and runkeys
# built from the source by the locked setuptools, into a venv; pip check proves the set complete.
FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY requirements/action.txt requirements/build.txt /opt/requirements/
RUN python3 -m venv /opt/runkeys \
 && /opt/runkeys/bin/pip install --require-hashes --no-deps --only-binary :all: \
        -r /opt/requirements/action.txt \
 && python3 -m venv /opt/build \
 && /opt/build/bin/pip install --require-hashes --no-deps --only-binary :all: \
        -r /opt/requirements/build.txt
# The core with its provider drivers; not the service's extras (Flask, gunicorn, SQLAlchemy).
COPY . /opt/runkeys-src
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /opt/wheel /opt/runkeys-src \
 && /opt/runkeys/bin/pip install --no-deps /opt/wheel/runkeys-*.whl \
 && /opt/runkeys/bin/pip check \
 && /opt/runkeys/bin/python -c "import runkeys.issuance, action_src.main, action_src.check, action_src.scan, psycopg, pymysql, redis" \
 && /opt/runkeys/bin/python -m pip uninstall --yes --quiet pip setuptools \
 && /opt/runkeys/bin/python -m compileall -q -f -j 0 --invalidation-mode unchecked-hash \
        /opt/runkeys/lib
# Bytecode checked by hash, not by the sources' mtimes: COPY --from gives the sources new ones,
# so most of pip's .pyc files went stale and, with PYTHONDONTWRITEBYTECODE, every start
# compiled those modules again. The image never changes its sources: nothing to check.

# Stage 2: the base and the venv; no source, no pip, no build tools.
FROM ${BASE_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /opt/runkeys /opt/runkeys

# Exec form and an absolute path: the runner passes no shell, and `args` are not expanded.
ENTRYPOINT ["/opt/runkeys/bin/runkeys-action"]
