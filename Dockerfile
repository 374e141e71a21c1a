# order-relay: runs the TypeScript sources through tsx (no build step), as the `node` user.
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
# /keys: docker-compose's throw-away simulator credentials (a named volume inherits this owner).
RUN mkdir -p /keys && chown node:node /keys
USER node
EXPOSE 9464
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s \
  CMD node -e "fetch('http://127.0.0.1:9464/healthz').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"
ENTRYPOINT ["node", "bin/order-relay.js"]
CMD ["run", "-c", "/etc/order-relay/config.yaml"]
