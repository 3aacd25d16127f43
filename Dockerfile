# One image for the three services; the compose file picks the module to run.
# It holds what the services run (shared and services): tools and tests stay in the source tree.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 GIAO_HOST=0.0.0.0
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
RUN pip install --no-cache-dir . && rm -rf build ./*.egg-info && useradd --system --uid 10001 giao
USER giao
# python -m services.orders | services.dispatch | services.tracking
CMD ["python", "-m", "services.orders"]
