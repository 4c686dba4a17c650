# syntax=docker/dockerfile:1
# eastwest's image:  docker build -t eastwest:$(git describe --always) .
# Build stage: the toolchain CI uses, pinned (bump with rustc in CI); dependencies from Cargo.lock.
FROM docker.io/library/rust:1.95.0-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN sh deploy/build.sh && install -D -m 0755 target/release/eastwest /out/eastwest

# Run stage: glibc and CA roots only, no shell, no package manager; user 65532 (numeric, so
# Kubernetes' runAsNonRoot can check it). Pin by digest in your registry for byte-for-byte rebuilds.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/eastwest /usr/local/bin/eastwest
USER 65532:65532
EXPOSE 15021 15443 15012 15017 15090
ENTRYPOINT ["/usr/local/bin/eastwest"]
CMD ["run"]
