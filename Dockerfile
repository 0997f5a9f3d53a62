# syntax=docker/dockerfile:1
# One image, three programs: the sidecar (`spiffe-connector run`), the issuer (`spiffe-connector issuer`)
# and the admission webhook (`spiffe-connector webhook`). Production dependencies only, non-root, and
# nothing written at run time outside mounted volumes, so it runs with a read-only root filesystem.
ARG NODE_IMAGE=node:24-bookworm-slim

# Build: typecheck src/ and bundle it into dist/ (main.js + lazily loaded chunks/) with the dev
# dependencies (TypeScript, esbuild; scripts/build.ts).
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: the `node` devDependency would fetch a second Node 24; the image already has one,
# so its bin shim is removed and `npm run build` runs tsc on the image's Node.
RUN npm ci --ignore-scripts --no-audit --no-fund && rm -f node_modules/.bin/node
COPY tsconfig.json tsconfig.build.json ./
COPY scripts ./scripts
COPY src ./src
RUN npm run build

# Production dependencies only.
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

# Runtime.
FROM ${NODE_IMAGE}
ENV NODE_ENV=production
# V8's young generation capped at 1 MB instead of growing to 16 MB during start: ~3 MB less resident at
# idle for the bundled sidecar, no cost to the endpoints' throughput beyond noise (bench/rss.ts,
# bench/aws-endpoint.ts). Set here, so it applies to all three programs and to the bench's production form.
ENV NODE_OPTIONS=--max-semi-space-size=1
# A passwd entry for the runtime user, so libraries asking for the home directory get an answer.
RUN groupadd --gid 65532 nonroot \
 && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin nonroot
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY package.json config.example.yaml ./
COPY bin ./bin
COPY proto ./proto
RUN chmod 0555 bin/spiffe-connector.js && ln -s /app/bin/spiffe-connector.js /usr/local/bin/spiffe-connector
USER 65532:65532
# The sidecar's ops port and metadata port, the webhook's HTTPS port, the issuer's ports (documentation only).
EXPOSE 9090 8443 8080
ENTRYPOINT ["spiffe-connector"]
CMD ["--help"]
