# One image for the three services; the command picks the service:
#   python -m services.intake | services.analytics | services.notifier | shared.kafka_topics
# Build: docker build -t cities-survey:<version> .   (docker compose builds it as cities-survey:dev)

# Base images are pinned by digest (the multi-platform index of the tag): a rebuild gets the same
# bytes. Update both lines together, with the digest the registry publishes for the new tag.

# --- build: the runtime dependencies, pinned and hash-checked, into a virtual environment ------
FROM python:3.11.15-slim@sha256:90744cff8f32887f075c47d747a173ff333e9e98801667af93c357fa9f5e28ff AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY requirements.runtime.lock ./
# Wheels only: nothing is built from source, so no unpinned build dependency is ever fetched.
RUN python -m venv /venv \
 && /venv/bin/pip install --require-hashes --only-binary=:all: --no-deps -r requirements.runtime.lock
COPY shared ./shared
COPY services ./services
COPY deploy/docker/healthcheck.py ./healthcheck.py
# Compiled now, because the root filesystem is read-only at run time.
RUN /venv/bin/python -m compileall -q /app

# --- run: the environment and the code, owned by root, run by an unprivileged user ------------
FROM python:3.11.15-slim@sha256:90744cff8f32887f075c47d747a173ff333e9e98801667af93c357fa9f5e28ff
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent app
COPY --from=build /venv /venv
COPY --from=build /app /app
WORKDIR /app
ENV PATH=/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
# intake 8000, analytics 8001, notifier 8002 (each overridable with <NAME>_PORT)
EXPOSE 8000 8001 8002
# The service of the container's command, on the port its settings read (see healthcheck.py).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/app/healthcheck.py", "/healthz"]
# SIGTERM ends a service gracefully within 10 s.
STOPSIGNAL SIGTERM
CMD ["python", "-m", "services.intake"]
