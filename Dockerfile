# Pluribus: both binaries (pluribus-agent, pluribusctl) in a small runtime image.
#   docker build -t pluribus .
#   docker run --rm pluribus pluribus-agent --nats-url nats://nats:4222
# Multi-stage: the Rust toolchain stays in the build stage.
FROM rust:1.89-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p pluribus-agent -p pluribusctl \
 && cp target/release/pluribus-agent target/release/pluribusctl /usr/local/bin/ \
 && strip /usr/local/bin/pluribus-agent /usr/local/bin/pluribusctl

FROM debian:bookworm-slim
# CA roots for mqtts:// and https:// sinks and TLS to NATS.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home pluribus
COPY --from=build /usr/local/bin/pluribus-agent /usr/local/bin/pluribusctl /usr/local/bin/
USER 10001
# Prometheus /metrics of the agent (--metrics-listen 0.0.0.0:9464); the dashboard (8080).
EXPOSE 9464 8080
CMD ["pluribus-agent", "--help"]
