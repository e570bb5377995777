#!/usr/bin/env bash
# Builds the litellm-operator OCI image without a container engine (`make image`):
#
#   1. crane (go-containerregistry), pinned in go.mod next to this script, built once from the Go module proxy into
#      ${LITELLM_CACHE_DIR:-$HOME/.cache/litellm-operator}/crane-<version>/bin/crane
#   2. a static release binary: glibc linked in (crt-static), so the image needs no loader and no libc
#   3. one layer holding the filesystem rootfs.sh lays out (the Dockerfile runs the same script) on an empty base,
#      and the config (user 65532, entrypoint, cmd, port, OCI labels) set with `crane mutate` against a throw-away
#      registry that `crane registry serve` runs on loopback for the duration of the build
#
# Writes, under ${CARGO_TARGET_DIR:-target}/image:
#
#   oci/                   the image as an OCI layout, digest as pushed:  crane push target/image/oci REGISTRY/IMAGE:TAG
#   litellm-operator.tar   the same image as a docker-style tarball:      docker load -i target/image/litellm-operator.tar
#
# Prints `name=path` lines on stdout (crane, binary, oci, tarball; progress goes to stderr), so callers can read
# what it built. `build.sh crane` builds and prints crane only.
#
# Environment:
#   IMAGE_REPOSITORY   the name the tarball is tagged with (default: the chart's image.repository)
#   IMAGE_REVISION     org.opencontainers.image.revision and the revision `--version` shows (default: the
#                      commit checked out, if git knows one)
#   IMAGE_CA_BUNDLE    the CA certificates to ship (default: /etc/ssl/certs/ca-certificates.crt)
#   IMAGE_RUST_TARGET  the Rust target to build (default: this machine's <arch>-unknown-linux-gnu). Another
#                      architecture needs its target installed (rustup target add) and a linker for it.
#   IMAGE_BINARY       a static litellm-operator binary built already, for IMAGE_RUST_TARGET (skips cargo)
#   SOURCE_DATE_EPOCH  the layer's file times (default: 0, so the same binary gives the same image digest)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)

say() { printf '[image] %s\n' "$*" >&2; }
fail() {
	say "$*"
	exit 1
}

# --- 1. crane ------------------------------------------------------------------------------------------------

crane_version=$(awk '$1 == "require" { $1 = "" ; $0 = $0 } $1 == "github.com/google/go-containerregistry" && $2 ~ /^v/ { print $2 }' "$here/go.mod")
[[ -n "$crane_version" ]] || fail "could not read the pinned go-containerregistry version from $here/go.mod"
cache=${LITELLM_CACHE_DIR:-$HOME/.cache/litellm-operator}
crane_bin="$cache/crane-${crane_version#v}/bin"
crane="$crane_bin/crane"

crane_ok() { [[ -x "$crane" && "$("$crane" version 2>/dev/null)" == "$crane_version" ]]; }

if crane_ok; then
	say "crane $crane_version already built"
else
	command -v go >/dev/null 2>&1 ||
		fail "go is required to build crane (go.mod asks for $(awk '$1 == "go" { print $2 }' "$here/go.mod") or newer)"
	say "building crane $crane_version (downloads its modules on the first run) ..."
	mkdir -p "$crane_bin"
	ldflags="-s -w -X github.com/google/go-containerregistry/cmd/crane/cmd.Version=$crane_version"
	(cd "$here" && CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags "$ldflags" -o "$crane.tmp" \
		github.com/google/go-containerregistry/cmd/crane)
	mv -f "$crane.tmp" "$crane"
	crane_ok || fail "$crane does not report version $crane_version"
fi
if [[ "${1:-}" == crane ]]; then
	echo "crane=$crane"
	exit 0
fi

# --- 2. the static binary --------------------------------------------------------------------------------------

# [workspace.package] KEY of the workspace Cargo.toml.
workspace_package() {
	awk -F'"' -v key="$1" '/^\[/ { in_package = ($0 == "[workspace.package]") }
		in_package && $1 ~ "^" key " *= *$" { print $2; exit }' "$repo/Cargo.toml"
}
version=$(workspace_package version)
source_url=$(workspace_package repository)
licenses=$(workspace_package license)
[[ -n "$version" && -n "$source_url" && -n "$licenses" ]] ||
	fail "could not read version, repository and license from [workspace.package] in Cargo.toml"

static_rustflags='-C target-feature=+crt-static --cfg getrandom_backend="linux_getrandom"'
rust_target=${IMAGE_RUST_TARGET:-$(uname -m)-unknown-linux-gnu}
case "$rust_target" in
x86_64-*) arch=amd64 ;;
aarch64-*) arch=arm64 ;;
*) fail "no image platform known for the Rust target $rust_target" ;;
esac
target_dir=${CARGO_TARGET_DIR:-$repo/target}
binary="$target_dir/$rust_target/release/litellm-operator"

# The revision the label names; an explicit one is stamped into the binary too (`--version`), which otherwise
# asks git itself (crates/operator/build.rs).
if [[ -n "${IMAGE_REVISION:-}" ]]; then
	revision=$IMAGE_REVISION
	export LITELLM_OPERATOR_REVISION=$IMAGE_REVISION
else
	revision=$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)
fi

if [[ -n "${IMAGE_BINARY:-}" ]]; then
	binary=$IMAGE_BINARY
	say "using the binary $binary"
else
	# crt-static links glibc in. getrandom (0.3 and later) looks libc's getrandom up with dlsym, which finds
	# nothing in a static binary, and falls back to /dev/urandom; linux_getrandom calls the linked one instead, so
	# the binary needs no device file. An explicit --target keeps RUSTFLAGS off build scripts and proc macros,
	# which stay dynamic host programs.
	say "building the static release binary for $rust_target (the first build takes minutes) ..."
	started=$(date +%s)
	(cd "$repo" && RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }$static_rustflags" \
		cargo build --locked --release --target "$rust_target" -p litellm-operator --bin litellm-operator)
	say "built $binary in $(($(date +%s) - started))s"
fi

# Static: no program interpreter (the loader), no shared library needed. (The output is captured first: `| grep
# -q` would end the pipe early and fail under pipefail.)
command -v readelf >/dev/null 2>&1 || fail "readelf (binutils) is required to check that the binary is static"
program_headers=$(readelf -lW "$binary") && dynamic_section=$(readelf -dW "$binary") ||
	fail "readelf cannot read $binary"
if grep -q 'INTERP' <<<"$program_headers" || grep -q '(NEEDED)' <<<"$dynamic_section"; then
	fail "$binary is dynamically linked: $(grep -E 'interpreter|NEEDED' <<<"$program_headers$dynamic_section")"
fi

# --- 3. the image ------------------------------------------------------------------------------------------------

out="$target_dir/image"
mkdir -p "$out"
ca_bundle=${IMAGE_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
[[ -f "$ca_bundle" ]] || fail "no CA certificates at $ca_bundle (install ca-certificates, or set IMAGE_CA_BUNDLE)"
bash "$here/rootfs.sh" "$binary" "$ca_bundle" "$out/rootfs"

# Owner, times and order fixed: the same files give the same layer digest.
tar --create --file "$out/layer.tar" --directory "$out/rootfs" --sort=name --format=gnu \
	--owner=0 --group=0 --numeric-owner --mtime="@${SOURCE_DATE_EPOCH:-0}" \
	etc tmp usr

repository=${IMAGE_REPOSITORY:-$(awk '$1 == "repository:" { print $2; exit }' "$repo/charts/litellm-operator/values.yaml")}
[[ -n "$repository" ]] || fail "no IMAGE_REPOSITORY, and none in the chart's values.yaml"

# `crane mutate` edits images in a registry: a throw-away one on loopback, in memory, gone when this script ends.
registry_log="$out/registry.log"
: >"$registry_log"
"$crane" registry serve --address 127.0.0.1:0 >"$registry_log" 2>&1 &
registry_pid=$!
trap 'kill "$registry_pid" 2>/dev/null || true' EXIT
port=""
for _ in $(seq 100); do
	port=$(sed -n 's/.*serving on port \([0-9][0-9]*\).*/\1/p' "$registry_log")
	[[ -n "$port" ]] && break
	kill -0 "$registry_pid" 2>/dev/null || fail "crane registry serve exited: $(cat "$registry_log")"
	sleep 0.1
done
[[ -n "$port" ]] || fail "crane registry serve did not say its port: $(cat "$registry_log")"
scratch="127.0.0.1:$port/litellm-operator:$version"

"$crane" append --oci-empty-base --new_layer "$out/layer.tar" --new_tag "$scratch" >/dev/null
mutate=(
	--set-platform "linux/$arch"
	--user 65532:65532
	--entrypoint /usr/local/bin/litellm-operator
	--cmd run
	--exposed-ports 8080/tcp
	--env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
	--env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
	--label "org.opencontainers.image.title=litellm-operator"
	--label "org.opencontainers.image.description=Runs the LiteLLM proxy on Google Cloud Run with every credential in Secret Manager"
	--label "org.opencontainers.image.version=$version"
	--label "org.opencontainers.image.revision=$revision"
	--label "org.opencontainers.image.source=$source_url"
	--label "org.opencontainers.image.licenses=$licenses"
)
"$crane" mutate "$scratch" "${mutate[@]}" --tag "$scratch" >/dev/null
rm -rf "$out/oci" "$out/litellm-operator.tar"
"$crane" pull --format oci "$scratch" "$out/oci"
"$crane" mutate "$scratch" --tag "$repository:$version" --output "$out/litellm-operator.tar" >/dev/null
rm -rf "$out/layer.tar" "$out/rootfs"

digest=$("$crane" digest "$scratch")
say "built $repository:$version ($digest, linux/$arch, revision $revision)"
say "  OCI layout: $out/oci"
say "  tarball:    $out/litellm-operator.tar ($(du -h "$out/litellm-operator.tar" | cut -f1))"
echo "crane=$crane"
echo "binary=$binary"
echo "oci=$out/oci"
echo "tarball=$out/litellm-operator.tar"
