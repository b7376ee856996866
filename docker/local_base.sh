#!/usr/bin/env bash
# Make a Debian bookworm base image from Debian's own packages, for machines that reach no container registry:
# debootstrap (minbase) from the machine's Debian mirror, then `docker import`. Every Dockerfile under docker/
# takes it as its base (`--build-arg BASE_IMAGE=<tag>`). Cached by tag: the tag names the suite and a hash of the
# package list, so a changed list makes a new image and an unchanged one costs a second; the root file system's
# tarball is kept in the cache dir too, so a wiped Docker data root is re-imported without a second debootstrap.
#
#   bash docker/local_base.sh            # prints the tag (e.g. loadgen-base:bookworm-3f2a9c1e) on its last line
#
# Needs: root, debootstrap (apt-get install debootstrap), a dockerd that answers (DOCKER_HOST is honoured).
# Environment: LOADGEN_CACHE_DIR (default ~/.cache/loadgen), DEBIAN_MIRROR (default: the first Debian URI of
# /etc/apt/sources.list*, else http://deb.debian.org/debian).
set -euo pipefail
suite=bookworm
# python3 + venv for loadgen, libgomp1 for llama-server (OpenMP), curl for health checks, ca-certificates for pip
packages=python3,python3-venv,ca-certificates,curl,libgomp1
cache="${LOADGEN_CACHE_DIR:-$HOME/.cache/loadgen}/docker"
hash=$(printf '%s %s 1' "$suite" "$packages" | sha256sum | cut -c1-8)
tag="loadgen-base:${suite}-${hash}"
tarball="$cache/base-${suite}-${hash}.tar"

say() { echo "local_base: $*" >&2; }
if docker image inspect "$tag" >/dev/null 2>&1; then
    echo "$tag"
    exit 0
fi
mkdir -p "$cache"
if [ ! -s "$tarball" ]; then
    command -v debootstrap >/dev/null 2>&1 || { say "debootstrap is missing (apt-get install debootstrap)"; exit 1; }
    mirror="${DEBIAN_MIRROR:-}"
    if [ -z "$mirror" ]; then
        mirror=$(grep -hoE '(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/* \
                 2>/dev/null | awk '{print $2}' | head -1 || true)
        mirror="${mirror:-http://deb.debian.org/debian}"
    fi
    root=$(mktemp -d "$cache/rootfs.XXXXXX")
    trap 'rm -rf "$root" "$tarball.tmp"' EXIT
    say "debootstrap $suite from $mirror (~2 min once; log $cache/debootstrap.log)"
    if ! debootstrap --variant=minbase --include="$packages" "$suite" "$root" "$mirror" >"$cache/debootstrap.log" 2>&1; then
        say "debootstrap could not make $suite from $mirror: $(grep -E '^(E|W):' "$cache/debootstrap.log" | tail -1)"
        exit 1
    fi
    # apt's lists and caches are of no use in an image
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
    tar --numeric-owner -C "$root" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
fi
docker import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' "$tarball" "$tag" >/dev/null
say "imported $tag"
echo "$tag"
