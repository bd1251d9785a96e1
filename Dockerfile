# syntax=docker/dockerfile:1
# balance-api: multi-stage build on Debian (the embedded-postgres binaries need glibc; the compose file
# uses a real PostgreSQL container, so the embedded one is only a fallback when DATABASE_URL is unset).

FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY db ./db
RUN npm run build && npm prune --omit=dev

FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production \
    PORT=3000 \
    HOST=0.0.0.0 \
    PGDATA_DIR=/app/.data/pg
WORKDIR /app
COPY --from=build --chown=node:node /app/package.json ./
COPY --from=build --chown=node:node /app/node_modules ./node_modules
COPY --from=build --chown=node:node /app/dist ./dist
RUN mkdir -p /app/.data && chown node:node /app/.data
USER node
EXPOSE 3000
# Healthy while the service answers and reaches PostgreSQL.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "const t=(process.env.API_TOKENS||process.env.API_READ_TOKENS||'').split(',')[0];fetch('http://127.0.0.1:'+(process.env.PORT||3000)+'/api/health',{headers:t?{authorization:'Bearer '+t}:{}}).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# node directly (no npm/sh in between), so SIGTERM reaches the graceful close.
CMD ["node", "dist/src/server.js"]
