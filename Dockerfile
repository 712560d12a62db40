# syntax=docker/dockerfile:1
#
# authsidecar: one static binary on a distroless base.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) -t authsidecar .
#
# Multi-platform: docker buildx build --platform linux/amd64,linux/arm64 .
# (the builder runs natively and cross-compiles; no emulation needed).

FROM --platform=$BUILDPLATFORM golang:1.26 AS build
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
WORKDIR /src

# Dependencies first, so that a change to the code alone reuses this layer.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download

COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
        -o /out/authsidecar ./cmd/authsidecar

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="authsidecar" \
      org.opencontainers.image.description="Authentication sidecar: OAuth2 client credentials outbound, JWT validation inbound" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/authsidecar/authsidecar"
COPY --from=build /out/authsidecar /authsidecar
# inbound, outbound (loopback by default), admin (/metrics, /healthz, /readyz)
EXPOSE 8000 4000 9464
# The numeric form of distroless's "nonroot" user: Kubernetes can only verify
# runAsNonRoot against a numeric user, and refuses to start the container
# otherwise ("image has non-numeric user").
USER 65532:65532
ENTRYPOINT ["/authsidecar"]
