# Python 3.11 from Debian's packages on the local Debian base (docker/base.sh): what
# scripts/build_images.sh passes to trainer/Dockerfile as BASE_IMAGE where python:3.11-slim-bookworm
# cannot be pulled. Build context: a folder holding this file and ca-certificates.crt (the build
# machine's CA bundle, which may include a TLS-intercepting proxy's CA that pip must trust).
ARG DEBIAN_IMAGE=apo-local/debian:bookworm
FROM ${DEBIAN_IMAGE}

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3.11 python3.11-venv python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# Kept beside Debian's bundle (update-ca-certificates would overwrite a replaced one).
COPY ca-certificates.crt /etc/ssl/certs/build-host-ca-certificates.crt
ENV LANG=C.UTF-8 \
    PIP_CERT=/etc/ssl/certs/build-host-ca-certificates.crt \
    SSL_CERT_FILE=/etc/ssl/certs/build-host-ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/build-host-ca-certificates.crt
CMD ["python3"]
