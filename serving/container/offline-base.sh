#!/usr/bin/env bash
# Builds a stand-in for the Dockerfile's base image (python:3.11-slim, Debian bookworm) for
# machines that reach Debian's mirrors and PyPI but no container registry, and imports it
# into the engine's store:
#
#     serving/container/offline-base.sh ENGINE TAG
#
# `make image OFFLINE_BASE=1` runs it only when TAG (which carries a hash of this file and of
# the host's CA bundle) is missing, then builds the Dockerfile with TAG in place of its base
# image (`--build-context <the base's reference>=docker-image://TAG`).
# Needs mmdebstrap and root (or sudo): the tree is unpacked with chroot.
set -euo pipefail

engine=${1:?usage: offline-base.sh ENGINE TAG}
tag=${2:?usage: offline-base.sh ENGINE TAG}
suite=bookworm
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# What the Dockerfile needs from its base: a Python 3.11 with venv (Debian's is 3.11),
# `python` on PATH, and the trust store, name service and time zone files of the official
# image.
packages=python3,python3-venv,python-is-python3,ca-certificates,netbase,tzdata
# The host's CA bundle joins the image's trust store: where downloads pass through a
# TLS-intercepting proxy, pip inside the build verifies against the proxy's CA like the host.
host_bundle=${HOST_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

command -v mmdebstrap >/dev/null || {
	echo "offline-base.sh: mmdebstrap not found (apt-get install mmdebstrap, or make system-packages)" >&2
	exit 2
}
sudo=$([ "$(id -u)" = 0 ] || echo sudo)
work=$(mktemp -d)
trap '$sudo rm -rf "$work"' EXIT

hooks=()
if [ -s "$host_bundle" ]; then
	cp "$host_bundle" "$work/host-ca-bundle.crt"
	hooks+=(
		--customize-hook="cp '$work/host-ca-bundle.crt' \"\$1/usr/local/share/ca-certificates/host-ca-bundle.crt\""
		--customize-hook='chroot "$1" update-ca-certificates --fresh >/dev/null'
	)
fi

echo "building the base stand-in $tag (Debian $suite minbase: ${packages//,/ })"
$sudo mmdebstrap --quiet --variant=minbase --include="$packages" "${hooks[@]}" \
	--customize-hook='rm -rf "$1"/usr/share/doc/* "$1"/usr/share/man/* "$1"/usr/share/info/*' \
	"$suite" "$work/rootfs.tar" "$mirror"
$sudo chown "$(id -u):$(id -g)" "$work/rootfs.tar"

# What python:3.11-slim sets too; PATH first, or nothing is found in the container.
"$engine" import \
	--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
	--change 'ENV LANG=C.UTF-8' \
	--change 'CMD ["python3"]' \
	"$work/rootfs.tar" "$tag" >/dev/null
echo "imported $tag"
