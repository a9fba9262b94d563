# cfbackup container image (ghcr.io/cfbackup/cfbackup; docs/RELEASE.md). Multi-stage: the build
# stage runs the same `go build` as the Makefile and .goreleaser.yaml (static, -trimpath, version
# stamped into internal/buildinfo); the final stage is distroless (CA certificates, tzdata, no shell),
# running as the unprivileged user 65532.
#
#   docker build --build-arg VERSION=v1.2.3 --build-arg COMMIT=$(git rev-parse HEAD) -t cfbackup .
#
# internal/release/dockerfile_test.go runs the RUN line below so this file cannot rot.
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG TARGETOS=linux
ARG TARGETARCH=amd64
ARG VERSION=dev
ARG COMMIT=
ARG DATE=
RUN CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -trimpath -ldflags "-s -w -X github.com/cfbackup/cfbackup/internal/buildinfo.version=${VERSION} -X github.com/cfbackup/cfbackup/internal/buildinfo.commit=${COMMIT} -X github.com/cfbackup/cfbackup/internal/buildinfo.date=${DATE}" -o /out/cfbackup ./cmd/cfbackup

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/cfbackup /usr/local/bin/cfbackup
USER 65532:65532
ENTRYPOINT ["cfbackup"]
