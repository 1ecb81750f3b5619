# The sublet image: what the pod runtime (charts/vcluster) runs.
#   docker build -t ghcr.io/sublet-dev/sublet:0.1.0 .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN make build

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/bin/sublet /usr/local/bin/sublet
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/sublet"]
