# signet-proxy container image.
#   docker build -t signet-proxy .
#   docker run -p 8080:8080 -e SIGNET_MASTER_PUBLIC_KEY=... -e GITHUB_TOKEN=... signet-proxy
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin signet-proxy

FROM debian:bookworm-slim
# The binary carries its own TLS roots (webpki-roots); no CA bundle needed.
RUN useradd --system --no-create-home signet-proxy
COPY --from=build /src/target/release/signet-proxy /usr/local/bin/signet-proxy
USER signet-proxy
EXPOSE 8080
ENTRYPOINT ["signet-proxy"]
