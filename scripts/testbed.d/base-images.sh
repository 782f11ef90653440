#!/usr/bin/env bash
# The base images deploy/Dockerfile names, made locally because this machine reaches no container registry:
#   docker.io/library/debian:bookworm-slim   debootstrap's minbase variant of bookworm, from Debian's mirror
#   docker.io/library/rust:1.95-bookworm     that, plus a C toolchain and rustup's Rust 1.95.0 laid out as the
#                                            official image lays it out (RUSTUP_HOME, CARGO_HOME, PATH)
# into the root containers storage buildah and podman share. They trust the CAs this machine trusts locally
# (/usr/local/share/ca-certificates: its egress is intercepted). Each is also kept as an OCI archive in
# $PALISADE_CACHE/images, so a wiped storage is refilled in seconds. Idempotent.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
CACHE=${PALISADE_CACHE:-$HOME/.cache/palisade}
IMAGES=$CACHE/images
DEBIAN_IMAGE=docker.io/library/debian:bookworm-slim
RUST_IMAGE=docker.io/library/rust:1.95-bookworm
mkdir -p "$IMAGES"
log() { printf '%s base-images: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

for package in buildah debootstrap; do
  dpkg -s "$package" >/dev/null 2>&1 || missing="${missing:-} $package"
done
if [ -n "${missing:-}" ]; then
  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >/dev/null
fi

present() { buildah inspect --type image "$1" >/dev/null 2>&1; }

# name archive-name make-function
ensure() {
  local name=$1 archive=$IMAGES/$2.oci.tar
  present "$name" && return 0
  if [ -f "$archive" ]; then
    log "restoring $name from $archive"
    local id; id=$(buildah pull -q "oci-archive:$archive") && buildah tag "$id" "$name" && return 0
  fi
  log "making $name (once; minutes)"
  "$3"
  buildah push -q "$name" "oci-archive:$archive.tmp:$name" >/dev/null
  mv "$archive.tmp" "$archive"
}

make_debian() {
  local root; root=$(mktemp -d "$IMAGES/debootstrap.XXXXXX")
  debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >"$IMAGES/debootstrap.log" 2>&1 \
    || { tail -n 20 "$IMAGES/debootstrap.log" >&2; rm -rf "$root"; exit 1; }
  # This machine's egress presents certificates of its own CAs: the images trust them as the host does (a
  # package's postinst, ca-certificates', adds them to the bundle), or nothing in them could fetch a crate.
  mkdir -p "$root/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/" 2>/dev/null || true
  # As slim as the official slim: no package lists, no downloaded packages, no documentation.
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/*
  local container mount
  container=$(buildah from scratch)
  mount=$(buildah mount "$container")
  tar -C "$root" -cf - . | tar -C "$mount" -xpf -
  buildah umount "$container" >/dev/null
  buildah config --cmd bash --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$container"
  buildah commit -q --rm "$container" "$DEBIAN_IMAGE" >/dev/null
  rm -rf "$root"
}

make_rust() {
  buildah bud -q --network host -f "$here/images/rust.Containerfile" -t "$RUST_IMAGE" "$here/images" >/dev/null
}

ensure "$DEBIAN_IMAGE" debian-bookworm-slim make_debian
ensure "$RUST_IMAGE" rust-1.95-bookworm make_rust
echo "$DEBIAN_IMAGE"
echo "$RUST_IMAGE"
