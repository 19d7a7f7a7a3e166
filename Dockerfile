# One image with every Sumud binary; docker-compose.yml picks the command.
# The toolchain is the workspace's rust-version, which covers every crate of
# the lockfile (tests/tests/deployment.rs checks both against cargo metadata).
FROM rust:1.90-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake libssl-dev pkg-config && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --workspace --bins

FROM debian:bookworm-slim
# curl answers the compose health checks (each service's /readyz on :9100).
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl libssl3 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/sumud /src/target/release/sumud-alerts /src/target/release/sumud-registry \
     /src/target/release/sumud-control /src/target/release/sumud-eligibility \
     /src/target/release/sumud-disbursement /src/target/release/sumud-provider-sim \
     /src/target/release/sumud-dashboard /usr/local/bin/
USER 65534
ENTRYPOINT []
