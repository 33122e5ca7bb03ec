# signet-proxy container image: the release binary on a distroless base
# (glibc and libgcc, no shell, no package manager), run as a numeric non-root
# user so Kubernetes' runAsNonRoot can check it.
#   docker build -t signet-proxy .
#   docker run -p 8080:8080 -e SIGNET_MASTER_PUBLIC_KEY=... -e GITHUB_TOKEN=... signet-proxy
# Checked by scripts/check-deploy (hadolint). Tags are pinned to a Rust
# release and a Debian release; pin digests too in a release pipeline.

# The full rust image, not -slim: jemalloc's build needs make.
FROM rust:1.95.0-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin signet-proxy \
    && strip target/release/signet-proxy

# Same Debian release as the build stage, so the glibc matches.
FROM gcr.io/distroless/cc-debian12:nonroot
# The binary carries its own TLS roots (webpki-roots); no CA bundle needed.
COPY --from=build /src/target/release/signet-proxy /usr/local/bin/signet-proxy
# 65532 is distroless' "nonroot"; numeric, so runAsNonRoot can verify it.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/signet-proxy"]
