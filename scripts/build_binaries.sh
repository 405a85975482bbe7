#!/usr/bin/env bash
# Build the Go binaries of the telemetry stack from the Go module proxy (no image registry,
# no GitHub needed):
#   otelcol  - OpenTelemetry Collector distribution from collector/manifest.yaml (ocb)
#   jaeger   - Jaeger v2 all-in-one (github.com/jaegertracing/jaeger/cmd/jaeger)
#
# Output: ${BIN_DIR:-.cache/bin} (relative to the repo root). A binary is rebuilt only when it
# is missing or its sidecar stamp (<bin>.stamp) no longer matches its inputs (the manifest's
# sha256 and the builder version; the Jaeger version), or FORCE_REBUILD=1.
# Go's module and build caches stay in their default places under $HOME, so a warm machine
# rebuilds fast even from a fresh clone. Measured on 2 cores: cold Go build cache ~11 min
# (otelcol ~2.5 min, jaeger ~8 min); fresh clone with warm Go caches ~40 s; rerun ~0 s.
#
# Env: BIN_DIR, FORCE_REBUILD=1, JAEGER_VERSION/JAEGER_RELEASE (defaults below),
# OCB_VERSION (default: the version of go.opentelemetry.io/collector/service in the manifest).
# Prints one line per binary: "<name>: built|reused in <s>s -> <path>".
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

MANIFEST="collector/manifest.yaml"
JAEGER_MODULE="github.com/jaegertracing/jaeger"
JAEGER_VERSION="${JAEGER_VERSION:-v1.76.0}"   # Go module version; v1.76.0 is Jaeger v2.13.0
JAEGER_RELEASE="${JAEGER_RELEASE:-v2.13.0}"   # what `jaeger version` reports (ldflags)
# The builder must be the release of the manifest's core modules.
OCB_VERSION="${OCB_VERSION:-$(sed -nE 's#^[[:space:]]*gomod:[[:space:]]*go\.opentelemetry\.io/collector/service[[:space:]]+(v[0-9][^[:space:]]*).*#\1#p' "$MANIFEST" | head -n1)}"
if [[ -z "$OCB_VERSION" ]]; then
  echo "build_binaries: cannot find the go.opentelemetry.io/collector/service version in $MANIFEST" >&2
  exit 1
fi

BIN_DIR="${BIN_DIR:-.cache/bin}"
[[ "$BIN_DIR" = /* ]] || BIN_DIR="$ROOT/$BIN_DIR"
BUILD_DIR="$ROOT/.cache/build"
TOOLS_DIR="$ROOT/.cache/tools"
mkdir -p "$BIN_DIR" "$BUILD_DIR" "$TOOLS_DIR"

export CGO_ENABLED=0
GO_STAMP="$(go env GOVERSION) $(go env GOOS)/$(go env GOARCH)"

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
sha256() { sha256sum "$1" | cut -d' ' -f1; }

# up_to_date BIN STAMP_TEXT: the binary exists and its stamp file says STAMP_TEXT.
up_to_date() {
  [[ "${FORCE_REBUILD:-0}" != 1 && -x "$1" && -f "$1.stamp" && "$(cat "$1.stamp")" == "$2" ]]
}

# run_logged LOG CMD...: run quietly into LOG; on failure show its tail and fail.
run_logged() {
  local log="$1"; shift
  if ! "$@" >>"$log" 2>&1; then
    echo "build_binaries: failed: $*" >&2
    tail -n 40 "$log" >&2
    echo "build_binaries: full log: $log" >&2
    return 1
  fi
}

# install BUILT_FILE NAME STAMP_TEXT: copy into BIN_DIR atomically, then write the stamp.
install_bin() {
  local tmp="$BIN_DIR/.$2.tmp.$$"
  cp "$1" "$tmp" && chmod 0755 "$tmp" && mv -f "$tmp" "$BIN_DIR/$2"
  printf '%s\n' "$3" >"$BIN_DIR/$2.stamp"
}

build_otelcol() {
  local start bin stamp log builder
  start="$(now)"
  bin="$BIN_DIR/otelcol"
  stamp="manifest_sha256=$(sha256 "$MANIFEST") ocb=$OCB_VERSION go=$GO_STAMP"
  if up_to_date "$bin" "$stamp"; then
    echo "otelcol: reused in $(elapsed "$start")s -> $bin"
    return
  fi
  log="$BUILD_DIR/otelcol.log"
  : >"$log"
  builder="$TOOLS_DIR/builder-$OCB_VERSION/builder"
  if [[ ! -x "$builder" ]]; then
    run_logged "$log" env GOBIN="$(dirname "$builder")" \
      go install -trimpath "go.opentelemetry.io/collector/cmd/builder@$OCB_VERSION"
  fi
  # The manifest's dist.output_path (./.cache/build/otelcol) is relative to the repo root.
  # ocb itself builds with CGO_ENABLED=0 (dist.cgo_enabled unset), -trimpath, -ldflags "-s -w".
  rm -rf "$BUILD_DIR/otelcol"
  run_logged "$log" "$builder" --config "$MANIFEST"
  install_bin "$BUILD_DIR/otelcol/otelcol" otelcol "$stamp"
  echo "otelcol: built in $(elapsed "$start")s -> $bin"
}

build_jaeger() {
  local start bin stamp log dir
  start="$(now)"
  bin="$BIN_DIR/jaeger"
  stamp="jaeger=$JAEGER_VERSION release=$JAEGER_RELEASE go=$GO_STAMP"
  if up_to_date "$bin" "$stamp"; then
    echo "jaeger: reused in $(elapsed "$start")s -> $bin"
    return
  fi
  log="$BUILD_DIR/jaeger.log"
  : >"$log"
  # `go install module@version` refuses modules with replace directives, so build the
  # program as a tool dependency of a throwaway module.
  dir="$BUILD_DIR/jaeger"
  rm -rf "$dir"
  mkdir -p "$dir"
  (
    cd "$dir"
    run_logged "$log" go mod init agentlightning.local/jaeger-build
    run_logged "$log" go get -tool "$JAEGER_MODULE/cmd/jaeger@$JAEGER_VERSION"
    # Plain build: the query API works; the web UI is a placeholder page (its assets are
    # built with npm and embedded only under a build tag).
    run_logged "$log" go build -trimpath \
      -ldflags "-s -w -X $JAEGER_MODULE/internal/version.latestVersion=$JAEGER_RELEASE" \
      -o "$dir/jaeger" "$JAEGER_MODULE/cmd/jaeger"
  )
  install_bin "$dir/jaeger" jaeger "$stamp"
  echo "jaeger: built in $(elapsed "$start")s -> $bin"
}

build_otelcol
build_jaeger
