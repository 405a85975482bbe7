#!/usr/bin/env bash
# Set VAR=value lines in an env file (compose's .env): earlier lines of those variables are
# replaced, every other line is kept, in order. scripts/build_images.sh (`make images`) uses it.
#
# The file holds API keys, so a rewrite never widens who can read it: the new content is written
# to a private (0600) temporary file in the same directory, which then takes the old file's mode
# (and owner, when run as root, e.g. `sudo make images`) and is renamed over it (atomic: no reader
# ever sees half a file).
# A new file is created 0600. A symlinked file is updated where the link points; the link stays.
#
# Usage: scripts/update_env_file.sh ENV_FILE VAR=value...
set -euo pipefail

die() { echo "update_env_file: $*" >&2; exit 2; }

[[ $# -ge 2 ]] || die "usage: $0 ENV_FILE VAR=value..."
file="$1"
shift
names=()
for line in "$@"; do
  [[ "$line" =~ ^[A-Za-z_][A-Za-z0-9_]*= && "$line" != *$'\n'* ]] || die "not a VAR=value line: $line"
  names+=("${line%%=*}")
done

target="$(readlink -f -- "$file")" || die "cannot resolve $file (does its directory exist?)"
tmp="$(mktemp "$(dirname -- "$target")/.$(basename -- "$target").XXXXXX")"  # mode 0600
trap 'rm -f -- "$tmp"' EXIT

# The content goes into the 0600 file first (a read-only old mode would refuse the write), then
# it takes the old file's owner and mode (chmod after chown, which may clear mode bits).
if [[ -e "$target" ]]; then
  pattern="^($(IFS='|'; echo "${names[*]}"))="
  # grep exits 1 when no line is left (fine), 2 on a read error (not fine).
  grep -vE -- "$pattern" "$target" >"$tmp" || [[ $? == 1 ]] || die "cannot read $target"
fi
printf '%s\n' "$@" >>"$tmp"
if [[ -e "$target" ]]; then
  if [[ "$(id -u)" == 0 ]]; then
    chown --reference="$target" -- "$tmp"
  fi
  chmod --reference="$target" -- "$tmp"
elif [[ "$(id -u)" == 0 && -n "${SUDO_UID:-}" ]]; then
  chown "$SUDO_UID:${SUDO_GID:-$SUDO_UID}" -- "$tmp"  # `sudo make images`: the user's file, not root's
fi
mv -f -- "$tmp" "$target"
trap - EXIT
