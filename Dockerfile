# One image for every process of the project; the command picks which one runs:
#
#   docker build -t saga:dev .
#   docker run saga:dev order_service serve --host 0.0.0.0 --port 8001
#   docker run saga:dev orchestrator relay
#   docker run saga:dev orchestrator purge --older-than 30d --dry-run
#
# The entrypoint is `python -m`, so the arguments are those of `python -m <package>` (see
# common/serve.py). deploy/README.md says how compose.yaml and deploy/k8s run it.

# Both stages on one base: the virtualenv built in the first keeps pointing at the second's
# interpreter (/usr/local/bin/python3.11).
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# The dependencies alone first: this layer is rebuilt when pyproject.toml changes, not at every
# change of the code. Every dependency ships wheels for CPython 3.11 (psycopg[binary] included),
# so no compiler is needed here either.
COPY pyproject.toml ./
COPY deploy/docker/requirements.py deploy/docker/
RUN python deploy/docker/requirements.py pyproject.toml > requirements.txt \
    && pip install --no-cache-dir --requirement requirements.txt \
    && pip check

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="msa-saga" \
      org.opencontainers.image.description="An orchestrated saga over REST services, each with its own PostgreSQL database: every process of the project, chosen by the command"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app
# A user with a name, not only a number: libpq looks the user up when a URL names none.
RUN groupadd --system --gid 10001 saga \
    && useradd --system --uid 10001 --gid saga --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin saga
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# The source tree, not a wheel: the Alembic histories under migrations/ are not a package, and
# common/db.py finds them beside common/. Owned by root, so the processes cannot change it.
COPY common/ common/
COPY sagaengine/ sagaengine/
COPY orchestrator/ orchestrator/
COPY order_service/ order_service/
COPY user_service/ user_service/
COPY payment_service/ payment_service/
COPY concert_service/ concert_service/
COPY data_platform/ data_platform/
COPY migrations/ migrations/
USER 10001:10001
EXPOSE 8000 8001 8002 8003 8004 8009
# No HEALTHCHECK: one image runs six servers on six ports and three commands that serve nothing
# (relay, migrate, purge), so no single check fits. compose.yaml gives each server its own
# healthcheck, and Kubernetes ignores HEALTHCHECK for its probes.
ENTRYPOINT ["python", "-m"]
CMD ["orchestrator", "serve", "--host", "0.0.0.0", "--port", "8000"]
