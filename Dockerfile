# syntax=docker/dockerfile:1
# One image, three programs: the sidecar (`run`), the issuer (`issuer`) and the admission webhook
# (`webhook`). The runtime is distroless Node 24: node and the C libraries it needs, no shell, no package
# manager; it holds only the runtime tree scripts/runtime-tree.ts writes (the bundle, the entry point, the
# Workload API proto and the few packages the bundle loads from node_modules, about 4 MB). Non-root, and
# nothing written at run time outside mounted volumes, so it runs with a read-only root filesystem.
#
# Both bases are pinned by digest (the multi-architecture index). To update one, read the current digest
# of its tag and replace it here, e.g.
#   docker buildx imagetools inspect gcr.io/distroless/nodejs24-debian12:nonroot   (or: crane digest ...)
#   docker buildx imagetools inspect node:24-bookworm-slim
# then rebuild and run `npm test` (test/docker/image.test.ts checks the pins' shape) and the benches.
ARG BUILD_IMAGE=node:24-bookworm-slim@sha256:0e0ff40c39bc087845bfb27465a0df4ea419520094bc35842ff83dd8cbe6f9b6
ARG RUNTIME_IMAGE=gcr.io/distroless/nodejs24-debian12:nonroot@sha256:14d42e2511532589a7c7e01a753667a74fcc96266e137e8125006b87b0c32d0a

# Build: typecheck src/ and bundle it into dist/ (main.js + lazily loaded chunks/) with the dev
# dependencies (TypeScript, esbuild; scripts/build.ts), then write the runtime tree into /runtime.
FROM ${BUILD_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
COPY packages ./packages
# --ignore-scripts: the `node` devDependency would fetch a second Node 24; the image already has one,
# so its bin shim is removed and `npm run build` runs tsc on the image's Node.
RUN npm ci --ignore-scripts --no-audit --no-fund && rm -f node_modules/.bin/node
COPY tsconfig.json tsconfig.build.json ./
COPY scripts ./scripts
COPY src ./src
COPY bin ./bin
COPY proto ./proto
RUN npm run build && node scripts/runtime-tree.ts /runtime

# Link-local mode's init container (webhook sidecar.linkLocalInitImage; README.md "Clients that hard-code the
# metadata address"): `docker build --target link-local-init`. Debian's static busybox (sh, ip, grep) from the
# pinned build base and scripts/link-local-init.sh, on an empty base: nothing else to pin, about 2 MB. It runs as
# uid 0 with the one capability NET_ADMIN (the webhook sets that), only to put two addresses on the pod's lo.
FROM ${BUILD_IMAGE} AS link-local-tools
RUN apt-get update && apt-get install -y --no-install-recommends busybox-static && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /out/bin /out/usr/local/bin && cp /bin/busybox /out/bin/busybox \
 && for applet in sh ip grep printf echo; do ln -s busybox "/out/bin/$applet"; done
COPY --chmod=0755 scripts/link-local-init.sh /out/usr/local/bin/link-local-init

FROM scratch AS link-local-init
COPY --from=link-local-tools /out /
ENV PATH=/bin:/usr/local/bin
ENTRYPOINT ["/usr/local/bin/link-local-init"]

# Runtime (the default target, so last): the distroless base and the runtime tree, nothing else.
FROM ${RUNTIME_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="spiffe-connector" \
      org.opencontainers.image.description="Per-pod sidecar that turns a SPIFFE identity into short-lived AWS, Google Cloud and Azure credentials on emulated metadata endpoints; also the issuer and the admission webhook." \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.base.name="gcr.io/distroless/nodejs24-debian12:nonroot"
ENV NODE_ENV=production
# V8's young generation capped at 1 MB instead of growing to 16 MB during start: ~3 MB less resident at
# idle for the bundled sidecar, no cost to the endpoints' throughput beyond noise (bench/rss.ts,
# bench/aws-endpoint.ts). Set here, so it applies to all three programs and to the bench's production form.
ENV NODE_OPTIONS=--max-semi-space-size=1
# glibc's malloc with its mmap threshold fixed at its starting value (128 KiB). Left to itself, glibc raises the
# threshold each time a block above it is freed (reading and compiling the bundle's chunks at start frees several),
# and the blocks it then serves from the main heap instead of their own mappings fragment it: 1 to 3 MB that the
# sidecar's idle RSS keeps (bench/rss.ts). No cost beyond noise to the endpoints (bench/aws-endpoint.ts). Read by
# the benches' production form like NODE_OPTIONS.
ENV GLIBC_TUNABLES=glibc.malloc.mmap_threshold=131072
WORKDIR /app
COPY --from=build /runtime /app
# The base's nonroot user (uid and gid 65532, home /home/nonroot).
USER 65532:65532
# The sidecar's ops port and metadata port, the webhook's HTTPS port, the issuer's ports (documentation only).
EXPOSE 9090 8443 8080
ENTRYPOINT ["/nodejs/bin/node", "/app/bin/spiffe-connector.js"]
CMD ["--help"]
