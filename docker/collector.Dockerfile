# The OpenTelemetry Collector image built from our own distribution (.cache/bin/otelcol, built
# by `make binaries` from collector/manifest.yaml, core/contrib v0.161.0), laid out like the official
# otel/opentelemetry-collector-contrib:0.161.0 image so compose.yaml runs either unchanged:
# FROM scratch, binary /otelcol-contrib, config /etc/otelcol-contrib/config.yaml, user 10001,
# no shell and no health check tool (dependants wait with `service_started`).
#
# Build context (scripts/build_images.sh makes it): otelcol-contrib, config.yaml,
# ca-certificates.crt (the build machine's CA bundle), rootfs/tmp.
FROM scratch
ARG VERSION=0.161.0
LABEL org.opencontainers.image.title="otelcol (apo-trainer distribution)" \
      org.opencontainers.image.version="${VERSION}"
COPY rootfs/ /
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY otelcol-contrib /otelcol-contrib
COPY config.yaml /etc/otelcol-contrib/config.yaml
USER 10001:10001
# OTLP gRPC/HTTP, span metrics (Prometheus exporter), own metrics, health check.
EXPOSE 4317 4318 8889 8888 13133
ENTRYPOINT ["/otelcol-contrib"]
CMD ["--config", "/etc/otelcol-contrib/config.yaml"]
