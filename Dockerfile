# weir with the Todo plugins. Multi-stage: build with the pinned toolchain, run slim.
# The build commands are the README's ("Build from source").
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN rustup show active-toolchain || rustup toolchain install
RUN scripts/build-plugins
RUN cargo build --release -p weir

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 weir
WORKDIR /app
COPY --from=build /src/target/release/weir /usr/local/bin/weir
COPY --from=build /src/target/wasm32-wasip2/release/task_validator.wasm \
                  /src/target/wasm32-wasip2/release/reminder_deriver.wasm \
                  /src/target/wasm32-wasip2/release/ui_projector.wasm \
                  /app/target/wasm32-wasip2/release/
COPY pipelines.toml /app/pipelines.toml
USER weir
ENV KAFKA_BROKERS=redpanda:9092 \
    WEIR_METRICS_LISTEN=0.0.0.0:9464
EXPOSE 9464
ENTRYPOINT ["weir"]
CMD ["run", "--config", "/app/pipelines.toml"]
