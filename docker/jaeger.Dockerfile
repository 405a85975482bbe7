# Jaeger v2 all-in-one built from its Go module (.cache/bin/jaeger, `make binaries`: module
# github.com/jaegertracing/jaeger v1.76.0 = Jaeger v2.13.0), laid out like the official
# jaegertracing/jaeger:2.13.0 image: binary /cmd/jaeger/jaeger-linux, JAEGER_LISTEN_HOST=0.0.0.0
# (the built-in config listens on localhost otherwise), user 10001, a writable /tmp, no shell.
# Difference: a build from the Go module serves a placeholder page instead of the web UI (the
# UI's assets are built with npm, outside the module); the query API (/api/...) is the same.
#
# Build context (scripts/build_images.sh makes it): jaeger-linux, ca-certificates.crt, rootfs/tmp.
FROM scratch
ARG VERSION=2.13.0
LABEL org.opencontainers.image.title="jaeger (all-in-one, built from the Go module)" \
      org.opencontainers.image.version="${VERSION}"
COPY rootfs/ /
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY jaeger-linux /cmd/jaeger/jaeger-linux
ENV JAEGER_LISTEN_HOST=0.0.0.0
USER 10001
# OTLP gRPC/HTTP, query API + UI, own metrics, health check, remote sampling.
EXPOSE 4317 4318 16686 8888 13133 5778
VOLUME ["/tmp"]
ENTRYPOINT ["/cmd/jaeger/jaeger-linux"]
