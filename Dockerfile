# syntax=docker/dockerfile:1
#
# The litellm-operator image: a static (musl) binary on a distroless base that has no shell and no package
# manager, running as an unprivileged user. Build for the platform you run on, e.g.
#
#   docker buildx build --platform linux/amd64,linux/arm64 -t IMAGE:TAG .
#
# Each platform compiles natively (under emulation when it differs from the build machine).

ARG RUST_VERSION=1.91

# ---- build -------------------------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-bookworm AS build
# musl-tools: the C toolchain for the musl target (ring and aws-lc-sys compile C); cmake: aws-lc-sys' build.
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
RUN rustup target add "$(uname -m)-unknown-linux-musl"
COPY . .
# The registry and target caches survive between builds (BuildKit cache mounts), so a code change recompiles
# only our crates. The binary is copied out of the cache mount before the step ends.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    target="$(uname -m)-unknown-linux-musl" \
 && export "CC_$(echo "$target" | tr - _)=musl-gcc" \
 && cargo build --locked --release --target "$target" -p litellm-operator --bin litellm-operator \
 && install -D -m 0755 "target/$target/release/litellm-operator" /out/litellm-operator

# ---- run ---------------------------------------------------------------------------------------------------
# distroless/static: CA certificates (Google APIs and the API server over TLS), tzdata and a nonroot user
# (65532), nothing else.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/litellm-operator /usr/local/bin/litellm-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/litellm-operator"]
CMD ["run"]
