# One image for every Evently Python process; docker-compose.yml picks the entry point.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml ./
COPY common ./common
COPY contracts ./contracts
COPY command_service ./command_service
COPY query_service ./query_service
COPY projectors ./projectors
COPY infra ./infra
COPY debezium ./debezium
RUN pip install .
USER nobody
