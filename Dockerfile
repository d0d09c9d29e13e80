# One image for the whole suite; each container runs one service: `llmchatlinker serve <service>`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LLMCHATLINKER_HOST=0.0.0.0 \
    LLMCHATLINKER_DATA_DIR=/app/var/data

WORKDIR /app

# Dependencies first, so code changes reuse this layer. Installing the root pyproject before its
# code is copied brings the pinned dependencies and the llmchatlinker console script; the wire
# format (wire/) is one of those dependencies, and mypy-protobuf is the protoc plugin
# tools.protogen runs (a dev dependency there).
COPY pyproject.toml ./
COPY wire/ wire/
RUN pip install ./wire . "mypy-protobuf==5.1.0"

# The generated code is a package of its own (gen/pyproject.toml comes with it).
COPY protos/ protos/
COPY tools/ tools/
RUN python -m tools.protogen gen && pip install --no-deps ./gen

# The suite's own packages, installed again now that their code is here.
COPY services/ services/
COPY testkit/ testkit/
RUN pip install --no-deps .

# Never root: the image only needs to read /app and write the SQLite default's data directory.
RUN useradd --system --uid 10001 --home-dir /app llmchatlinker \
    && mkdir -p /app/var/data && chown -R llmchatlinker /app/var
USER 10001

# The ports of orchestrator (front door), user_unit, chat_unit, llm_unit and db_unit.
EXPOSE 50051 50052 50053 50054 50055

ENTRYPOINT ["llmchatlinker"]
CMD ["serve", "orchestrator"]
