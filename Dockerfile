# syntax=docker/dockerfile:1.7
# One image for the whole uv workspace: every service, every simulator and every command.
# The service is chosen by the command, e.g.
#   docker run kanol python -m kanol_archive serve --host 0.0.0.0 --port 8003
# Build: docker build -t kanol:dev .
ARG PYTHON_VERSION=3.11
ARG UV_VERSION=0.13.9

FROM ghcr.io/astral-sh/uv:${UV_VERSION} AS uv

# -- build: resolve the locked dependencies into /app/.venv ---------------------------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS build
COPY --from=uv /uv /usr/local/bin/uv
# Bytecode compiled now, since the runtime's root filesystem is read-only; no Python
# downloaded by uv: the image's own interpreter is the one the runtime stage has too.
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /app

# The dependencies alone first, so that a change of code does not reinstall them.
COPY pyproject.toml uv.lock ./
COPY libs/common/pyproject.toml libs/common/
COPY services/identity/pyproject.toml services/identity/
COPY services/actes-pes/pyproject.toml services/actes-pes/
COPY services/archive/pyproject.toml services/archive/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --all-packages --no-install-workspace

# Then the workspace itself. It stays installed in place (editable) at /app: each service
# finds its Alembic migrations beside its sources (services/<name>/migrations).
COPY libs libs
COPY services services
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --all-packages

# -- runtime: the interpreter, the environment and the code; no uv, no compiler ------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
ARG UID=10001
RUN groupadd --system --gid "${UID}" kanol \
 && useradd --system --uid "${UID}" --gid kanol --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin kanol \
 && mkdir -p /data \
 && chown kanol:kanol /data
# Owned by root and read-only for the service: it writes only to /data (and /tmp).
COPY --from=build /app /app
WORKDIR /app
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    KANOL_DATA_DIR=/data \
    KANOL_LOG_FORMAT=json
USER ${UID}:${UID}
VOLUME ["/data"]
# identity, actes-pes, archive, prefecture simulator, Hélios simulator
EXPOSE 8001 8002 8003 8090 8091
CMD ["python", "-m", "kanol_identity", "serve", "--host", "0.0.0.0", "--port", "8001"]
