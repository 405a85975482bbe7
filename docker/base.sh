#!/usr/bin/env bash
# Make a Debian root filesystem tarball for `docker import`, from Debian's own mirror: the base of
# every local image on a machine that can reach package registries but no image registry.
#
# Usage: docker/base.sh OUT.tar.gz        (needs root and debootstrap: apt-get install debootstrap)
#
# Env: DEBIAN_SUITE (bookworm), DEBIAN_MIRROR (http://deb.debian.org/debian),
#      DEBIAN_SECURITY_MIRROR (http://deb.debian.org/debian-security).
#
# The result is close to the official debian:bookworm-slim image: debootstrap's minbase variant
# (apt, dpkg, bash, coreutils; ~80 MB), apt set up like in the official image (no recommends,
# no package cache, no index files kept), the updates and security suites enabled, no docs or
# man pages installed by later apt-get calls, and a policy-rc.d that keeps package scripts from
# starting services. Plain http to the mirror is what Debian uses by default: apt verifies every
# index with Debian's signing keys, so no CA certificate is involved.
set -euo pipefail

out="${1:?usage: docker/base.sh OUT.tar.gz}"
suite="${DEBIAN_SUITE:-bookworm}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
security="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"

command -v debootstrap >/dev/null || { echo "base.sh: needs debootstrap (apt-get install debootstrap)" >&2; exit 1; }
[[ "$(id -u)" == 0 ]] || { echo "base.sh: debootstrap needs root" >&2; exit 1; }

work="$(mktemp -d "${TMPDIR:-/tmp}/apo-rootfs.XXXXXX")"
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"

debootstrap --variant=minbase "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -n 30 "$work/debootstrap.log" >&2
  echo "base.sh: debootstrap failed" >&2
  exit 1
}

cat >"$root/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
deb $security $suite-security main
EOF

# What the official image's build does (debuerreotype): lean apt, nothing cached in layers.
cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
cat >"$root/etc/apt/apt.conf.d/docker-no-recommends" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
EOF
cat >"$root/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
printf '#!/bin/sh\n# No service starts inside an image build.\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 0755 "$root/usr/sbin/policy-rc.d"

# Docker provides these at run time; the host's copies must not end up in the image.
rm -f "$root/etc/resolv.conf" "$root/etc/hostname" "$root/etc/machine-id"
: >"$root/etc/machine-id"
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
  "$root"/var/log/*.log "$root"/var/log/apt/* "$root"/tmp/* "$root"/usr/share/doc/*/changelog* \
  "$root"/usr/share/man/* "$root"/usr/share/info/*

tmp="$out.tmp.$$"
tar --numeric-owner --xattrs -C "$root" -czf "$tmp" .
mv -f "$tmp" "$out"
