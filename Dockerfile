# syntax=docker/dockerfile:1
#
# twinstream image: runs `twinstream run` on a mounted topology.
#
#   docker build -t twinstream .
#   docker run --rm -p 8080:8080 \
#       -e TWINSTREAM_HTTP=0.0.0.0:8080 -e TWINSTREAM_WRITE_TOKEN=change-me \
#       -v "$PWD/topologies/demo.yaml:/topology.yaml:ro" \
#       -v twinstream-state:/state twinstream
#   docker run --rm -v "$PWD/topologies/demo.yaml:/topology.yaml:ro" twinstream check /topology.yaml
#
# The demo topology listens on 127.0.0.1:8080 (unreachable from outside the
# container) and takes its HTTP write token from TWINSTREAM_WRITE_TOKEN (the
# node refuses to start without it): TWINSTREAM_HTTP (the `--http` flag of
# `run`) makes it listen on all the container's interfaces.
#
# State (RocksDB snapshots, `{state_dir}` sink files, dead letters) goes to the
# /state volume. Use a named volume: a bind-mounted host directory must be
# writable by uid 10001. `docker stop` sends SIGTERM: twinstream drains and
# writes a final snapshot ("stopped cleanly", exit code 0). Docker kills a
# container 10 s after SIGTERM: a node with much to drain wants `docker stop
# -t 60` (twinstream's own --stop-timeout is 60 s); a kill loses nothing that
# was durable either.
#
# Both bases are build arguments, so the image can be built from local
# stand-ins where no registry is reachable (scripts/test-image.sh does so with
# podman and the images of scripts/base-images.sh).

# Any Rust >= 1.89 (Cargo.toml rust-version) on bookworm, e.g. rust:1.89-bookworm.
ARG RUST_IMAGE=rust:1-bookworm
# The runtime base: the same Debian release as the builder (glibc, libstdc++).
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS builder
# rocksdb's bindgen needs libclang; gcc/g++ come with the rust image.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libclang-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The whole (.dockerignore-filtered) context, not just src/: Cargo.toml may
# declare [[bench]]/[[test]] targets whose files cargo requires to exist.
COPY . .
# Dependency caching: the cargo registry and the target dir are BuildKit cache
# mounts, so a rebuild after a source change reuses the RocksDB C++ build
# (~10 min on 2 cores) instead of starting over. The binary is copied out of
# the cache mount within the same step. Debug info is stripped (384 MB -> 14 MB;
# symbols stay, so backtraces still name functions).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin twinstream \
    && strip --strip-debug -o /usr/local/bin/twinstream target/release/twinstream

FROM ${RUNTIME_IMAGE}
# The binary needs only libc, libm, libgcc_s and libstdc++ (all in bookworm-slim).
RUN groupadd --system --gid 10001 twinstream \
    && useradd --system --uid 10001 --gid twinstream --home-dir /work --no-create-home \
        --shell /usr/sbin/nologin twinstream \
    && mkdir -p /state /work \
    && chown twinstream:twinstream /state /work
COPY --from=builder /usr/local/bin/twinstream /usr/local/bin/twinstream
# Owned by the user above before VOLUME, so a new named volume starts writable.
VOLUME /state
WORKDIR /work
ENV TWINSTREAM_STATE_DIR=/state
# The HTTP API, where the topology or TWINSTREAM_HTTP puts it on 0.0.0.0:8080.
EXPOSE 8080
USER twinstream:twinstream
ENTRYPOINT ["twinstream"]
CMD ["run", "/topology.yaml"]
