# inboxd in a small static image. No container engine runs on the
# development machine: TestDeployFiles (cmd/inboxd) checks what can be
# checked without one (the build command below, the flags compose passes).
#
#   docker build -t inboxd .
#   docker run -p 7600:7600 -p 127.0.0.1:7601:7601 -p 7603:7603 -v inboxd-data:/data \
#     -e INBOXD_WS_ORIGINS=https://chat.example.com inboxd

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/inboxd ./cmd/inboxd
# The data directory, owned by the image's non-root user (65532).
RUN mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/inboxd /usr/local/bin/inboxd
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
VOLUME /data
# 7600: clients; 7601: /healthz, /readyz, /metrics (publish it privately);
# 7603: WebSocket clients at /ws (browsers only from the origins in
# INBOXD_WS_ORIGINS; put a TLS terminator in front for wss://).
EXPOSE 7600 7601 7603
ENTRYPOINT ["/usr/local/bin/inboxd"]
CMD ["-listen", ":7600", "-admin", ":7601", "-ws", ":7603", "-data", "/data"]
