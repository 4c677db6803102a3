# syntax=docker/dockerfile:1
# serin controller image: a static binary on distroless, non-root, nothing else.
#   docker build -t serin:dev .
# Build stage: musl for a fully static binary (rustls, no OpenSSL). reqwest's rustls
# feature also builds aws-lc-rs (C) and the allocator is jemalloc (C, configured in
# .cargo/config.toml), so the stage needs musl-gcc from musl-tools.
FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY .cargo ./.cargo
COPY crates ./crates
COPY src ./src
COPY benches ./benches
COPY e2e ./e2e
COPY tests ./tests
RUN cargo build --locked --release --target x86_64-unknown-linux-musl \
      --bin serin --bin kubectl-serin \
 && cp target/x86_64-unknown-linux-musl/release/serin /serin \
 && cp target/x86_64-unknown-linux-musl/release/kubectl-serin /kubectl-serin

# Runtime: no shell, no package manager; runs as the distroless nonroot user (65532).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /serin /usr/local/bin/serin
COPY --from=build /kubectl-serin /usr/local/bin/kubectl-serin
COPY analysis-templates /usr/share/serin/analysis-templates
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["/usr/local/bin/serin"]
CMD ["controller"]
