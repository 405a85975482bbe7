#!/usr/bin/env bash
# Build every image of the docker compose stack locally, for a machine that reaches package
# registries (Debian, PyPI, the Go module proxy) but no image registry. `make images` runs it.
#
#   apo-local/debian:bookworm        debootstrap minbase (docker/base.sh), imported
#   apo-local/python:3.11-bookworm   Debian's python3.11 + venv (docker/python.Dockerfile)
#   apo-local/trainer:<version>      trainer/Dockerfile on that base (version: pyproject.toml)
#   apo-local/otelcol:<version>      .cache/bin/otelcol + collector/config.yaml (docker/collector.Dockerfile)
#   apo-local/jaeger:<version>       .cache/bin/jaeger (docker/jaeger.Dockerfile)
#   apo-local/prometheus:<version>   Debian's prometheus + prometheus/prometheus.yml (docker/prometheus.Dockerfile)
#
# Grafana has no Debian package and cannot be built here: the variables printed include
# GRAFANA_PROFILE=grafana, which keeps Grafana out of `up` and `up train` (see compose.yaml).
#
# Usage: scripts/build_images.sh [ENV_FILE]
#   Prints the variables that make compose.yaml use these images (TRAINER_IMAGE=... etc.) on
#   stdout, one per line; with ENV_FILE (e.g. .env), also writes them there, replacing earlier
#   values of the same variables and keeping every other line.
#
# Each image carries a label (apo.inputs) with the sha256 of everything it is built from
# (Dockerfile, files copied in, base image id); an image whose label matches is reused without
# calling docker build, so a rerun with nothing changed takes a few seconds. The Debian root
# filesystem tarball is cached in $APO_IMAGE_CACHE (default ~/.cache/apo-trainer), which outlives
# a fresh clone (as do Docker's images and layer cache).
#
# Env: FORCE_REBUILD=1 (rebuild everything, base included), APO_IMAGE_CACHE, IMAGE_PREFIX
#      (apo-local), DEBIAN_MIRROR / DEBIAN_SECURITY_MIRROR (docker/base.sh), CA_BUNDLE (the CA
#      bundle copied into the images for TLS to package registries; default: the host's).
# Needs: a running Docker engine; root and debootstrap for the first base build; Go (or
# prebuilt .cache/bin binaries) for the collector and Jaeger (scripts/build_binaries.sh).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

ENV_FILE="${1:-}"
PREFIX="${IMAGE_PREFIX:-apo-local}"
CACHE_DIR="${APO_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/apo-trainer}"
CA_BUNDLE="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
BIN_DIR="$ROOT/.cache/bin"
SUITE=bookworm

DEBIAN_IMAGE="$PREFIX/debian:$SUITE"
PYTHON_IMAGE="$PREFIX/python:3.11-$SUITE"
TRAINER_VERSION="$(sed -nE 's/^version[[:space:]]*=[[:space:]]*"([^"]+)".*/\1/p' pyproject.toml | head -n1)"
OTELCOL_VERSION="$(sed -nE 's#^[[:space:]]*gomod:[[:space:]]*go\.opentelemetry\.io/collector/service[[:space:]]+v([0-9][^[:space:]]*).*#\1#p' collector/manifest.yaml | head -n1)"
JAEGER_VERSION="${JAEGER_RELEASE:-v2.13.0}"
JAEGER_VERSION="${JAEGER_VERSION#v}"
TRAINER_IMAGE="$PREFIX/trainer:$TRAINER_VERSION"
COLLECTOR_IMAGE="$PREFIX/otelcol:$OTELCOL_VERSION"
JAEGER_IMAGE="$PREFIX/jaeger:$JAEGER_VERSION"
PROMETHEUS_REPO="$PREFIX/prometheus"   # tagged with the Debian package's version once built

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
log() { echo "build_images: $*" >&2; }
die() { log "$*"; exit 1; }

docker info >/dev/null 2>&1 || die "no Docker engine answers (start dockerd; see README)"
[[ -n "$TRAINER_VERSION" && -n "$OTELCOL_VERSION" ]] || die "cannot read versions from pyproject.toml / collector/manifest.yaml"
[[ -r "$CA_BUNDLE" ]] || die "CA bundle $CA_BUNDLE not readable (set CA_BUNDLE)"
mkdir -p "$CACHE_DIR"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/apo-images.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

# hash_of ITEM...: sha256 of files (content + path) and literal strings ("=text").
hash_of() {
  local item
  for item in "$@"; do
    if [[ "$item" == =* ]]; then
      printf 'literal %s\n' "${item#=}"
    else
      printf 'file %s %s\n' "$item" "$(sha256sum <"$item" | cut -d' ' -f1)"
    fi
  done | sha256sum | cut -d' ' -f1
}

image_id() { docker image inspect -f '{{.Id}}' "$1" 2>/dev/null || true; }
image_inputs() { docker image inspect -f '{{ index .Config.Labels "apo.inputs" }}' "$1" 2>/dev/null || true; }
up_to_date() { [[ "${FORCE_REBUILD:-0}" != 1 && "$(image_inputs "$1")" == "$2" ]]; }

# build NAME TAG INPUTS_HASH CONTEXT DOCKERFILE [docker build args...]: quiet build, log on failure.
build() {
  local name="$1" tag="$2" inputs="$3" context="$4" dockerfile="$5"
  shift 5
  local blog="$CACHE_DIR/build-$name.log"
  if ! docker build --force-rm --label "apo.inputs=$inputs" -f "$dockerfile" -t "$tag" "$@" "$context" >"$blog" 2>&1; then
    tail -n 40 "$blog" >&2
    die "$name: docker build failed (full log: $blog)"
  fi
}

# --- Debian base -------------------------------------------------------------------------------
build_debian() {
  local start inputs tarball
  start="$(now)"
  inputs="$(hash_of docker/base.sh "=$SUITE")"
  if up_to_date "$DEBIAN_IMAGE" "$inputs"; then
    log "debian: reused in $(elapsed "$start")s -> $DEBIAN_IMAGE"
    return
  fi
  tarball="$CACHE_DIR/debian-$SUITE-minbase-${inputs:0:12}.tar.gz"
  if [[ "${FORCE_REBUILD:-0}" == 1 || ! -s "$tarball" ]]; then
    log "debian: debootstrap $SUITE (~40 s) -> $tarball"
    DEBIAN_SUITE="$SUITE" docker/base.sh "$tarball"
  fi
  docker import --change 'CMD ["bash"]' --change 'ENV LANG=C.UTF-8' \
    --change "LABEL apo.inputs=$inputs" "$tarball" "$DEBIAN_IMAGE" >/dev/null
  log "debian: built in $(elapsed "$start")s -> $DEBIAN_IMAGE"
}

# --- Python base -----------------------------------------------------------------------------------
build_python() {
  local start inputs ctx
  start="$(now)"
  inputs="$(hash_of docker/python.Dockerfile "$CA_BUNDLE" "=$(image_id "$DEBIAN_IMAGE")")"
  if up_to_date "$PYTHON_IMAGE" "$inputs"; then
    log "python: reused in $(elapsed "$start")s -> $PYTHON_IMAGE"
    return
  fi
  ctx="$WORK/python"
  mkdir -p "$ctx"
  cp docker/python.Dockerfile "$ctx/Dockerfile"
  cp "$CA_BUNDLE" "$ctx/ca-certificates.crt"
  build python "$PYTHON_IMAGE" "$inputs" "$ctx" "$ctx/Dockerfile" --build-arg "DEBIAN_IMAGE=$DEBIAN_IMAGE"
  log "python: built in $(elapsed "$start")s -> $PYTHON_IMAGE"
}

# --- Trainer ---------------------------------------------------------------------------------------
build_trainer() {
  local start inputs files
  start="$(now)"
  # Exactly what .dockerignore lets into the context, plus the base image.
  mapfile -t files < <(
    printf '%s\n' pyproject.toml requirements.lock README.md .dockerignore trainer/Dockerfile docker/healthcheck.py
    find trainer -type f ! -path '*/__pycache__/*' ! -name '*.pyc' ! -name Dockerfile ! -name .env ! -name '.env.*' |
      LC_ALL=C sort
  )
  inputs="$(hash_of "${files[@]}" "=$(image_id "$PYTHON_IMAGE")")"
  if up_to_date "$TRAINER_IMAGE" "$inputs"; then
    log "trainer: reused in $(elapsed "$start")s -> $TRAINER_IMAGE"
    return
  fi
  log "trainer: building (cold: ~2.5 min, mostly installing ~150 packages from PyPI; a code change: ~7 s)"
  build trainer "$TRAINER_IMAGE" "$inputs" . trainer/Dockerfile \
    --build-arg "BASE_IMAGE=$PYTHON_IMAGE" --build-arg "VERSION=$TRAINER_VERSION"
  log "trainer: built in $(elapsed "$start")s -> $TRAINER_IMAGE"
}

# --- Collector and Jaeger (static Go binaries on scratch) -----------------------------------------
ensure_binaries() {
  if command -v go >/dev/null; then
    scripts/build_binaries.sh >&2   # no-op when the stamps match (~0 s)
  elif [[ ! -x "$BIN_DIR/otelcol" || ! -x "$BIN_DIR/jaeger" ]]; then
    die "no Go toolchain and no prebuilt $BIN_DIR/otelcol, $BIN_DIR/jaeger (make binaries needs Go)"
  fi
}

# scratch_context DIR: a context with rootfs/tmp (world-writable, sticky) and the CA bundle.
scratch_context() {
  mkdir -p "$1/rootfs/tmp"
  chmod 1777 "$1/rootfs/tmp"
  cp "$CA_BUNDLE" "$1/ca-certificates.crt"
}

build_collector() {
  local start inputs ctx
  start="$(now)"
  inputs="$(hash_of docker/collector.Dockerfile "$BIN_DIR/otelcol" collector/config.yaml "$CA_BUNDLE")"
  if up_to_date "$COLLECTOR_IMAGE" "$inputs"; then
    log "collector: reused in $(elapsed "$start")s -> $COLLECTOR_IMAGE"
    return
  fi
  ctx="$WORK/collector"
  scratch_context "$ctx"
  cp docker/collector.Dockerfile "$ctx/Dockerfile"
  cp collector/config.yaml "$ctx/config.yaml"
  ln "$BIN_DIR/otelcol" "$ctx/otelcol-contrib" 2>/dev/null || cp "$BIN_DIR/otelcol" "$ctx/otelcol-contrib"
  build collector "$COLLECTOR_IMAGE" "$inputs" "$ctx" "$ctx/Dockerfile" --build-arg "VERSION=$OTELCOL_VERSION"
  log "collector: built in $(elapsed "$start")s -> $COLLECTOR_IMAGE"
}

build_jaeger() {
  local start inputs ctx
  start="$(now)"
  inputs="$(hash_of docker/jaeger.Dockerfile "$BIN_DIR/jaeger" "$CA_BUNDLE")"
  if up_to_date "$JAEGER_IMAGE" "$inputs"; then
    log "jaeger: reused in $(elapsed "$start")s -> $JAEGER_IMAGE"
    return
  fi
  ctx="$WORK/jaeger"
  scratch_context "$ctx"
  cp docker/jaeger.Dockerfile "$ctx/Dockerfile"
  ln "$BIN_DIR/jaeger" "$ctx/jaeger-linux" 2>/dev/null || cp "$BIN_DIR/jaeger" "$ctx/jaeger-linux"
  build jaeger "$JAEGER_IMAGE" "$inputs" "$ctx" "$ctx/Dockerfile" --build-arg "VERSION=$JAEGER_VERSION"
  log "jaeger: built in $(elapsed "$start")s -> $JAEGER_IMAGE"
}

# --- Prometheus ------------------------------------------------------------------------------------
# Tagged with the version of Debian's package (e.g. 2.42.0), read from the built image; the
# inputs label of `:debian` says whether a rebuild is needed.
PROMETHEUS_IMAGE=""
build_prometheus() {
  local start inputs ctx version
  start="$(now)"
  inputs="$(hash_of docker/prometheus.Dockerfile prometheus/prometheus.yml "=$(image_id "$DEBIAN_IMAGE")")"
  if up_to_date "$PROMETHEUS_REPO:debian" "$inputs"; then
    version="$(docker image inspect -f '{{ index .Config.Labels "org.opencontainers.image.version" }}' "$PROMETHEUS_REPO:debian")"
    PROMETHEUS_IMAGE="$PROMETHEUS_REPO:$version"
    if [[ -n "$version" && "$(image_id "$PROMETHEUS_IMAGE")" == "$(image_id "$PROMETHEUS_REPO:debian")" ]]; then
      log "prometheus: reused in $(elapsed "$start")s -> $PROMETHEUS_IMAGE"
      return
    fi
  fi
  ctx="$WORK/prometheus"
  mkdir -p "$ctx"
  cp docker/prometheus.Dockerfile "$ctx/Dockerfile"
  cp prometheus/prometheus.yml "$ctx/prometheus.yml"
  build prometheus "$PROMETHEUS_REPO:build" "$inputs" "$ctx" "$ctx/Dockerfile" --build-arg "DEBIAN_IMAGE=$DEBIAN_IMAGE"
  # Debian's version string (2.42.0+ds-5+deb12u1) -> 2.42.0; stamped as a label on a final layer.
  version="$(docker run --rm --entrypoint dpkg-query "$PROMETHEUS_REPO:build" -W -f '${Version}' prometheus)"
  version="${version%%+*}"
  version="${version%%-*}"
  [[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "prometheus: unexpected package version '$version'"
  printf 'FROM %s\nLABEL org.opencontainers.image.version="%s"\n' "$PROMETHEUS_REPO:build" "$version" >"$ctx/Dockerfile.version"
  build prometheus-version "$PROMETHEUS_REPO:debian" "$inputs" "$ctx" "$ctx/Dockerfile.version"
  PROMETHEUS_IMAGE="$PROMETHEUS_REPO:$version"
  docker tag "$PROMETHEUS_REPO:debian" "$PROMETHEUS_IMAGE"
  docker rmi "$PROMETHEUS_REPO:build" >/dev/null
  log "prometheus: built in $(elapsed "$start")s -> $PROMETHEUS_IMAGE"
}

total_start="$(now)"
build_debian
build_python
build_trainer
ensure_binaries
build_collector
build_jaeger
build_prometheus
log "all images ready in $(elapsed "$total_start")s"

env_lines=(
  "TRAINER_IMAGE=$TRAINER_IMAGE"
  "TRAINER_BASE_IMAGE=$PYTHON_IMAGE"
  "COLLECTOR_IMAGE=$COLLECTOR_IMAGE"
  "JAEGER_IMAGE=$JAEGER_IMAGE"
  "PROMETHEUS_IMAGE=$PROMETHEUS_IMAGE"
  # No local Grafana: its own profile keeps `up` and `up train` from trying to pull it.
  "GRAFANA_PROFILE=grafana"
)
printf '%s\n' "${env_lines[@]}"

if [[ -n "$ENV_FILE" ]]; then
  # .env holds API keys: the helper keeps its mode and owner (a plain rewrite could widen them).
  scripts/update_env_file.sh "$ENV_FILE" "${env_lines[@]}"
  log "wrote the image variables to $ENV_FILE (mode kept)"
fi
