# Prometheus from Debian's package (2.42) on the local Debian base, laid out like the official
# prom/prometheus image so compose.yaml runs either unchanged: binary /bin/prometheus (= /usr/bin: Debian's /bin is merged into /usr), config
# /etc/prometheus/prometheus.yml, data in /prometheus (working directory, volume), user nobody,
# and `wget` for the health check (the official image has BusyBox's).
#
# Build context (scripts/build_images.sh makes it): prometheus.yml.
ARG DEBIAN_IMAGE=apo-local/debian:bookworm
FROM ${DEBIAN_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus wget \
 && rm -rf /var/lib/apt/lists/* \
    # 212 MB of raw time zone data the web UI never loads (it uses moment-timezone-with-data.js).
 && rm -rf /usr/share/javascript/moment-timezone/data \
 && mkdir -p /prometheus \
 && chown -R nobody:nogroup /prometheus
COPY prometheus.yml /etc/prometheus/prometheus.yml
USER nobody
WORKDIR /prometheus
VOLUME ["/prometheus"]
EXPOSE 9090
ENTRYPOINT ["/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
