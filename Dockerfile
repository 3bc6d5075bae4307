# The `hotswap` command in an image of its own: `docker build -t hotswap .`, then
# `docker run hotswap` runs `hotswap serve` (see host/cli/deploy/DEPLOYING.md).
#
# The build stage needs crates.io; the build adds the wasm32 target itself, as on any machine.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin hotswap

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --create-home --home-dir /var/lib/hotswap hotswap
COPY --from=build /src/target/release/hotswap /usr/local/bin/hotswap
USER hotswap
# The data directory: SQLite's database, or with PostgreSQL this replica's cache of artifacts
# and compiled plugins. Give HOTSWAP_DATABASE_URL for replicas on one PostgreSQL database.
ENV HOTSWAP_DATA_DIR=/var/lib/hotswap \
    HOTSWAP_LISTEN=0.0.0.0:8080 \
    HOTSWAP_LOG_FORMAT=json
VOLUME ["/var/lib/hotswap"]
EXPOSE 8080
# Plain HTTP on 0.0.0.0 is refused unless TLS is given (HOTSWAP_TLS_CERT, HOTSWAP_TLS_KEY) or
# the run adds `--allow-plain-http` behind a load balancer that terminates TLS.
ENTRYPOINT ["hotswap", "serve"]
