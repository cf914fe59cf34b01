# The runkeys service: the GitHub App's webhook receiver and API (`runkeys serve`, gunicorn), and
# from the same image its worker and sweeper (`runkeys worker`, `runkeys sweep`) and the operator
# commands (`runkeys leases`, `runkeys revoke`). docs/service.md, "Container image".
#
#   buildah bud --format docker -f service.Dockerfile --build-arg BASE_IMAGE=... -t runkeys-service .
#   docker build -f service.Dockerfile -t runkeys-service .
#
# BASE_IMAGE: by default the python-base stage, an exact release of the official Python image, as
# in the action's Dockerfile (its tag is in a FROM line because Dependabot reads no ARG defaults:
# https://github.com/dependabot/dependabot-core/issues/2057). Any Debian-like image with python3
# (3.11+) and its venv module can be given instead; scripts/base-image.sh makes one locally.
ARG BASE_IMAGE=python-base
FROM python:3.12.13-slim-trixie AS python-base

# Stage 1: the locked dependencies of the postgres extra, by hash and as wheels only (nothing is
# compiled), and runkeys built from the source by the locked setuptools, into a venv; pip check
# proves the set complete. The source tree, the build venv and the wheel stay in this stage.
FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY requirements/service.txt requirements/build.txt /opt/requirements/
RUN python3 -m venv /opt/runkeys \
 && /opt/runkeys/bin/pip install --require-hashes --no-deps --only-binary :all: \
        -r /opt/requirements/service.txt \
 && python3 -m venv /opt/build \
 && /opt/build/bin/pip install --require-hashes --no-deps --only-binary :all: \
        -r /opt/requirements/build.txt
COPY . /opt/runkeys-src
# Nothing installs packages at run time, so pip and setuptools (where the venv has it) go.
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /opt/wheel /opt/runkeys-src \
 && /opt/runkeys/bin/pip install --no-deps /opt/wheel/runkeys-*.whl \
 && /opt/runkeys/bin/pip check \
 && /opt/runkeys/bin/python -c "import handler.app, gunicorn, sqlalchemy, psycopg, flask" \
 && /opt/runkeys/bin/python -m pip uninstall --yes --quiet pip setuptools

# Stage 2: the base and the venv; no source, no pip, no build tools.
FROM ${BASE_IMAGE}
ARG BASE_IMAGE
# runkeys.__version__, passed by whoever builds (the release workflow, the tests).
ARG VERSION=unknown
LABEL org.opencontainers.image.title="runkeys service" \
      org.opencontainers.image.description="The runkeys GitHub App: keeps the lease ledger and retires each key when its job, run or pull request is over." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"

# A fixed numeric uid and gid, so that a volume's owner and a Kubernetes runAsUser can name it
# without the image's /etc/passwd. Its home is the ledger's directory.
# (--no-log-init: no lastlog/faillog records sized by a large uid.)
RUN groupadd --gid 10001 runkeys \
 && useradd --uid 10001 --gid 10001 --no-log-init --no-create-home --home-dir /var/lib/runkeys \
        --shell /usr/sbin/nologin runkeys \
 && mkdir -p /var/lib/runkeys \
 && chown 10001:10001 /var/lib/runkeys \
 && chmod 0700 /var/lib/runkeys
COPY --from=build /opt/runkeys /opt/runkeys

# RUNKEYS_DATABASE_URL: the SQLite ledger on the volume (one replica); several replicas set a
# postgresql:// URL. RUNKEYS_BIND: `runkeys serve`'s default --bind, every interface, since the
# container's port is what gets published; the health check reads its port from here too, so
# setting RUNKEYS_BIND moves both.
ENV PATH=/opt/runkeys/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/var/lib/runkeys \
    RUNKEYS_DATABASE_URL=sqlite:////var/lib/runkeys/runkeys.sqlite3 \
    RUNKEYS_BIND=0.0.0.0:8080

# The ledger is the only record of which credentials exist: keep it outside the container.
VOLUME ["/var/lib/runkeys"]
WORKDIR /var/lib/runkeys
USER 10001:10001
EXPOSE 8080

# Liveness only (/readyz would mark the container unhealthy while its database is down, and an
# orchestrator would restart it for nothing). urllib: the image needs no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('RUNKEYS_BIND', '').rpartition(':')[2] or '8080'; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]

# `docker run IMAGE` serves; `docker run IMAGE worker` (or sweep, leases, revoke) runs the others.
ENTRYPOINT ["runkeys"]
CMD ["serve"]
