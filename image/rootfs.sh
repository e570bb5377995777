#!/usr/bin/env bash
# Lays out the image's whole filesystem in OUT, from the static operator BINARY and the CA_BUNDLE (PEM) of the
# machine that builds it:
#
#   /etc/passwd, /etc/group        root, nobody and nonroot (65532), the user the image runs as
#   /etc/nsswitch.conf             files, then DNS: the lookups built into the static binary
#   /etc/ssl/certs/ca-certificates.crt
#   /tmp                           1777, for an emptyDir when the root filesystem is read-only
#   /usr/local/bin/litellm-operator
#
# Everything is owned by root and not writable by the user. Both image/build.sh (crane, no container engine) and
# the Dockerfile run this script, so the two images hold the same files; tests/tests/image.rs checks it.
set -euo pipefail

if (($# != 3)); then
	echo "usage: $0 BINARY CA_BUNDLE OUT" >&2
	exit 2
fi
binary=$1 ca_bundle=$2 out=$3
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

if ! grep -q -- '-----BEGIN CERTIFICATE-----' "$ca_bundle"; then
	echo "$ca_bundle holds no PEM certificate" >&2
	exit 1
fi

rm -rf "$out"
install -d -m 0755 "$out" "$out/etc" "$out/etc/ssl" "$out/etc/ssl/certs" "$out/usr" "$out/usr/local" \
	"$out/usr/local/bin"
install -d -m 1777 "$out/tmp"
install -m 0644 "$here/rootfs/etc/passwd" "$here/rootfs/etc/group" "$here/rootfs/etc/nsswitch.conf" "$out/etc/"
install -m 0644 "$ca_bundle" "$out/etc/ssl/certs/ca-certificates.crt"
install -m 0755 "$binary" "$out/usr/local/bin/litellm-operator"
