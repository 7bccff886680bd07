# One image for the three services; the command picks the service (python -m services.<name>).
FROM python:3.11-slim AS build
WORKDIR /app
COPY requirements.lock pyproject.toml README.md ./
RUN python -m venv /venv && /venv/bin/pip install --no-cache-dir --require-hashes -r requirements.lock
COPY shared ./shared
COPY services ./services
RUN /venv/bin/pip install --no-cache-dir --no-deps .

FROM python:3.11-slim
RUN useradd --system --uid 10001 app
COPY --from=build /venv /venv
ENV PATH=/venv/bin:$PATH PYTHONUNBUFFERED=1
USER app
EXPOSE 8000 8001 8002
CMD ["python", "-m", "services.intake"]
