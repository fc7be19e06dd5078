# The one Plotline image: `plotline serve` runs everything (embedded mode);
# `plotline serve auth|docs|data|push` runs one service, as the Helm chart's Deployments do.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# What the package needs to build (pyproject.toml names README.md as its readme), nothing else.
COPY pyproject.toml README.md ./
COPY services ./services
COPY client ./client
RUN pip install . && rm -rf /src

# The chart runs as uid 10001 with a read-only root filesystem (HOME=/tmp there).
RUN groupadd --gid 10001 plotline \
    && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/plotline plotline
USER 10001:10001
WORKDIR /home/plotline

EXPOSE 5006
ENTRYPOINT ["plotline"]
# Inside a container 127.0.0.1 is unreachable from outside: listen on every interface.
CMD ["serve", "--ip", "0.0.0.0"]
