# The gateway image: compiled JavaScript on node:20-slim, runtime dependencies only (no tsx, no src/).
# Build: docker build -t rowgate .
# Run:   docker run -p 4000:4000 -e DATABASE_URL=postgres://… -v "$PWD/rowgate.config.json:/app/rowgate.config.json:ro" rowgate
# NODE_IMAGE: any Node 20 image on Debian (a registry mirror, a pinned digest; the test's own where none can be pulled).
ARG NODE_IMAGE=node:20-slim
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

FROM ${NODE_IMAGE}
ENV NODE_ENV=production PORT=4000
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /src/dist ./dist
COPY bin ./bin
COPY demo ./demo
COPY rowgate.config.schema.json ./
# The config is mounted at /app/rowgate.config.json; DATABASE_URL and the secrets come from the environment.
USER node
EXPOSE 4000
ENTRYPOINT ["node", "bin/rowgate.mjs"]
CMD ["serve", "--host", "0.0.0.0"]
