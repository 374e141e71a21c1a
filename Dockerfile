# order-relay, as the `node` user. The TypeScript sources are compiled to JavaScript while the
# image is built (bin/compile.js); the running process carries no TypeScript loader.
FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY tsconfig.json ./
COPY bin ./bin
COPY src ./src
COPY connectors ./connectors
COPY config ./config
RUN node bin/order-relay.js --help > /dev/null && test -f .build/*/src/cli/main.js
# A small young generation: the connector allocates fast but keeps little, and V8's default
# (up to 16 MB per semi-space) costs about 45 MB of resident memory for nothing.
ENV NODE_OPTIONS="--max-semi-space-size=4"
# /keys: docker-compose's throw-away simulator credentials (a named volume inherits this owner).
RUN mkdir -p /keys && chown node:node /keys
USER node
EXPOSE 9464
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s \
  CMD node -e "fetch('http://127.0.0.1:9464/healthz').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"
ENTRYPOINT ["node", "bin/order-relay.js"]
CMD ["run", "-c", "/etc/order-relay/config.yaml"]
