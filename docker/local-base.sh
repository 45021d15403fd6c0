#!/usr/bin/env bash
# Builds and runs the images with podman on machines that have no Docker engine and reach no
# image registry (this project's CI machines): podman (with runc) runs them, and the base image is
# made locally from Debian's packages. Needs root (apt-get, debootstrap) and about 1 minute for the base.
# Each verb is idempotent: what exists is kept (python --rebuild makes the Python base again).
#
# Copied from the machines' shared ../shared/containers/local-base.sh (2026-12-06), which a fresh
# CI machine may not have; the tests (tests/docker/conftest.py) call this copy. Changes: `setup` also
# installs podman-compose from PyPI into its own virtualenv, /opt/podman-compose (Debian 12's
# package, 1.0.3, has no `config` command), `env` mounts the CA bundle and /etc/pip.conf into
# builds only where the machine has them, and sourcing it leaves the shell's options alone.
#
#   bash docker/local-base.sh setup     # apt-get podman, runc, debootstrap; podman-compose; podman settings
#   bash docker/local-base.sh debian    # localhost/debian:bookworm-slim from debootstrap
#   bash docker/local-base.sh python    # localhost/python-local:3.11-slim-bookworm: the
#                                       # above + python3, pip and venv, `python`/`pip` on PATH
#   source docker/local-base.sh env     # exports CONTAINERS_CONF, PODMAN_BUILD, PODMAN_RUN (flags below), PODMAN_COMPOSE
#   $PODMAN_BUILD -f docker/Dockerfile --build-arg BASE=localhost/python-local:3.11-slim-bookworm -t headwater .
#   $PODMAN_RUN -v hw-data:/data headwater            # runs the image's default command
#
# Why the flags: these machines use cgroup v1 (crun refuses it; runc works), forbid raising
# RLIMIT_NPROC (so no default ulimits), and have no container network (host network instead).
# pip inside a build reaches the package index only with this machine's CA bundle and pip.conf,
# so builds mount both read-only; an image built here carries neither.
[ "${BASH_SOURCE[0]}" != "$0" ] || set -euo pipefail   # not when sourced: the caller's shell keeps its options
conf=/etc/containers/headwater-local.conf
compose=/opt/podman-compose/bin/podman-compose
case "${1:-}" in
  setup)
    command -v podman >/dev/null && command -v runc >/dev/null && command -v debootstrap >/dev/null || {
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap >/dev/null; }
    [ -x "$compose" ] || { python3 -m venv /opt/podman-compose \
      && /opt/podman-compose/bin/pip install -q --disable-pip-version-check podman-compose==1.6.0; } \
      || echo "podman-compose could not be installed in /opt/podman-compose (podman itself is set up)" >&2
    mkdir -p /etc/containers
    printf '[containers]\ndefault_ulimits = []\n[engine]\nruntime = "runc"\n' > "$conf"
    echo "podman $(podman --version | awk '{print $3}') with runc; settings in $conf; $compose" ;;
  debian)
    podman image exists localhost/debian:bookworm-slim 2>/dev/null && { echo "localhost/debian:bookworm-slim exists"; exit 0; }
    root=$(mktemp -d /tmp/rootfs.XXXX)
    mirror=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)
    [ -n "$mirror" ] || mirror=$(grep -h '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 | awk '{print $2}')
    debootstrap --variant=minbase bookworm "$root" "$mirror" >/tmp/debootstrap.log 2>&1 \
      || { rm -rf "$root"; echo "debootstrap failed: see /tmp/debootstrap.log"; exit 1; }
    tar -C "$root" -c . | CONTAINERS_CONF=$conf podman import - localhost/debian:bookworm-slim >/dev/null
    rm -rf "$root"; echo "built localhost/debian:bookworm-slim" ;;
  python)
    podman image exists localhost/python-local:3.11-slim-bookworm 2>/dev/null && [ "${2:-}" != "--rebuild" ] \
      && { echo "localhost/python-local:3.11-slim-bookworm exists"; exit 0; }
    bash "$0" debian
    d=$(mktemp -d)
    cat > "$d/Containerfile" <<'CF'
FROM localhost/debian:bookworm-slim
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      python3 python3-venv ca-certificates >/dev/null && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /usr/local/python
ENV PATH=/usr/local/python/bin:$PATH
CF
    CONTAINERS_CONF=$conf podman build --network host -t localhost/python-local:3.11-slim-bookworm "$d" >/tmp/python-base.log 2>&1 \
      || { echo "python base failed: see /tmp/python-base.log"; exit 1; }
    rm -rf "$d"; echo "built localhost/python-local:3.11-slim-bookworm" ;;
  env)
    export CONTAINERS_CONF=$conf
    PODMAN_BUILD="podman build --network host"
    for f in /etc/ssl/certs/ca-certificates.crt /etc/pip.conf; do
      if [ -f "$f" ]; then PODMAN_BUILD="$PODMAN_BUILD -v $f:$f:ro"; fi
    done
    export PODMAN_BUILD
    export PODMAN_RUN="podman run --rm --network host"
    export PODMAN_COMPOSE=$compose ;;
  *) sed -n '2,24p' "${BASH_SOURCE[0]}"; return 2 2>/dev/null || exit 2 ;;
esac
