# Multi-stage build: a static binary on a distroless, non-root base.
#   docker build -t tokenbroker .
#   docker run --rm -p 7443:7443 -v $PWD/config:/etc/tokenbroker:ro tokenbroker serve --config /etc/tokenbroker/tokenbroker.yaml
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/tokenbroker ./cmd/tokenbroker

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/tokenbroker /usr/local/bin/tokenbroker
USER nonroot:nonroot
# gRPC and metrics/health
EXPOSE 7443 9090
ENTRYPOINT ["/usr/local/bin/tokenbroker"]
CMD ["serve", "--config", "/etc/tokenbroker/tokenbroker.yaml"]
