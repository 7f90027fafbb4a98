# Images of the gateway, the node and the operator CLI, one target each:
#
#   docker build --target gateway -t tongban/gateway:0.1.0 .
#   docker build --target node    -t tongban/node:0.1.0 .
#   docker build --target cli     -t tongban/cli:0.1.0 .
#
# The runtime stages are `FROM scratch` plus what deploy/image/rootfs.sh lays out: the
# binary, exactly the libraries it links (glibc, libm, libgcc_s), user 65532. No shell,
# no package manager; runs as non-root with a read-only root filesystem (the Helm
# charts mount everything the processes write). The test suite runs the binaries in
# that same filesystem, chrooted as user 65532 with the root read-only
# (scripts/check-charts), since no container engine runs on its machines.

# The builder's Debian (bookworm) is the one whose glibc the runtime stages copy.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p tongban-gateway -p tongban-node -p tongban-cli --bins \
 && deploy/image/rootfs.sh target/release /rootfs

FROM scratch AS base
COPY --from=build /rootfs/ /
USER 65532:65532
WORKDIR /var/lib/tongban

FROM base AS gateway
EXPOSE 7000 7080
ENTRYPOINT ["/usr/local/bin/tongban-gateway"]
CMD ["--config", "/etc/tongban/config/gateway.toml"]

FROM base AS node
EXPOSE 7000 8080 9090
ENTRYPOINT ["/usr/local/bin/tongban-node"]
CMD ["--config", "/etc/tongban/config/node.toml"]

FROM base AS cli
ENTRYPOINT ["/usr/local/bin/tongban"]
