# The inference service for Cloud Run: functions-framework serving `predict` on $PORT (5000).
# The newest 3.11 patch release the official images publish on Debian 12 (3.11.15, June 2026).
FROM python:3.11.15-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=5000

WORKDIR /app

# Dependencies first: this layer is rebuilt only when they change. The lock pins every package,
# transitive ones included, at the versions the tests ran with; --no-deps installs exactly that set.
COPY requirements.lock .
RUN pip install --no-cache-dir --no-deps -r requirements.lock && pip check

COPY main.py .
COPY function/ function/

RUN useradd --system --no-create-home --uid 10001 inference
USER 10001

EXPOSE 5000
# functions-framework's server with the request head bounded (function/server.py); it reads
# $PORT itself, so the exec form needs no shell.
CMD ["python", "-m", "function.server", "--host=0.0.0.0"]
