# syntax=docker/dockerfile:1
#
# The litellm-operator image for those who build with Docker. `make image` (image/build.sh) builds the same image
# without a container engine, and the release image comes from there: a static binary (glibc linked in) on an
# empty base with CA certificates and the nonroot user 65532, files laid out by image/rootfs.sh in both cases.
# tests/tests/image.rs checks that this file and the built image agree (files, user, entrypoint, cmd, port, env,
# labels). Build for the platform you run on:
#
#   docker buildx build --build-arg REVISION="$(git rev-parse HEAD)" -t IMAGE:TAG .
#
# Another platform (--platform linux/arm64) compiles natively under emulation, slowly; image/README.md describes
# cross compiling instead.

ARG RUST_VERSION=1.91

# ---- build -------------------------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-bookworm AS build
# cmake: aws-lc-sys' build on platforms without its pregenerated build files.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The build context has no .git: the revision comes from the build argument, for `--version` and the label.
ARG REVISION=unknown
# The registry and target caches survive between builds (BuildKit cache mounts), so a code change recompiles
# only our crates. The Rust flags are image/build.sh's: crt-static links glibc in, linux_getrandom makes getrandom
# call the linked getrandom instead of falling back to /dev/urandom; the explicit --target keeps them off build
# scripts and proc macros. The filesystem is laid out outside the cache mount, before the step ends.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    target="$(uname -m)-unknown-linux-gnu" \
 && RUSTFLAGS='-C target-feature=+crt-static --cfg getrandom_backend="linux_getrandom"' \
    LITELLM_OPERATOR_REVISION="${REVISION}" \
    cargo build --locked --release --target "$target" -p litellm-operator --bin litellm-operator \
 && bash image/rootfs.sh "target/$target/release/litellm-operator" /etc/ssl/certs/ca-certificates.crt /out/rootfs

# ---- run ---------------------------------------------------------------------------------------------------
FROM scratch
COPY --from=build /out/rootfs/ /
# VERSION is the workspace's version (a test keeps it so); pass REVISION, the commit built.
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="litellm-operator" \
      org.opencontainers.image.description="Runs the LiteLLM proxy on Google Cloud Run with every credential in Secret Manager" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="https://github.com/litellm-operator/litellm-operator" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/litellm-operator"]
CMD ["run"]
