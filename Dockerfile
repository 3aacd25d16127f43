# One image for the three services; the compose file picks the module to run.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 GIAO_HOST=0.0.0.0
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY tools ./tools
RUN pip install --no-cache-dir . && useradd --system --uid 10001 giao
USER giao
# python -m services.orders | services.dispatch | services.tracking
CMD ["python", "-m", "services.orders"]
