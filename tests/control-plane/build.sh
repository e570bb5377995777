#!/usr/bin/env bash
# Builds the real etcd, kube-apiserver, kube-controller-manager (for namespace deletion and
# garbage collection) and a matching kubectl that the integration tests and the demo run, from the versions pinned in go.mod next to this script, into a cache
# outside the repository:
#
#   ${LITELLM_CACHE_DIR:-$HOME/.cache/litellm-operator}/k8s-<version>/bin
#
# A no-op when the binaries are already there at the pinned versions. Prints the bin
# dir on the last line of stdout (progress goes to stderr), so callers can do
#   LITELLM_K8S_BIN_DIR=$(bash tests/control-plane/build.sh)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here"

say() { printf '[control-plane] %s\n' "$*" >&2; }

# The single source of truth for versions is go.mod.
k8s_version=$(awk '$1 == "require" { $1 = "" ; $0 = $0 } $1 == "k8s.io/kubernetes" && $2 ~ /^v/ { print $2 }' go.mod)
etcd_version=$(awk '$1 == "go.etcd.io/etcd/server/v3" { print $2 }' go.mod)
if [[ -z "$k8s_version" || -z "$etcd_version" ]]; then
	say "could not read the pinned versions from $here/go.mod"
	exit 1
fi

cache=${LITELLM_CACHE_DIR:-$HOME/.cache/litellm-operator}
out="$cache/k8s-${k8s_version#v}"
bin="$out/bin"
mkdir -p "$bin"

# reports BINARY LINE ARGS...: BINARY exists and prints LINE when run with ARGS. (The
# output is captured first: `| grep -q` would end the pipe early and fail under pipefail.)
reports() {
	local binary=$1 line=$2 output
	shift 2
	[[ -x "$bin/$binary" ]] || return 1
	output=$("$bin/$binary" "$@" 2>/dev/null) || return 1
	grep -qx -- "$line" <<<"$output"
}
apiserver_ok() { reports kube-apiserver "Kubernetes $k8s_version" --version; }
controller_manager_ok() { reports kube-controller-manager "Kubernetes $k8s_version" --version; }
kubectl_ok() { reports kubectl "Client Version: $k8s_version" version --client; }
etcd_ok() { reports etcd "etcd Version: ${etcd_version#v}" --version; }

if ! command -v go >/dev/null 2>&1; then
	if apiserver_ok && controller_manager_ok && etcd_ok && kubectl_ok; then
		echo "$bin"
		exit 0
	fi
	say "go is required to build etcd, kube-apiserver, kube-controller-manager and kubectl (go.mod asks for $(awk '$1 == "go" { print $2 }' go.mod) or newer)"
	exit 1
fi

# build NAME PACKAGE LDFLAGS: compiles PACKAGE into $bin/NAME, printing a progress line
# every 100 compiled packages. The full compiler output goes to $out/build-NAME.log.
build() {
	local name=$1 pkg=$2 ldflags=$3
	local log="$out/build-$name.log" total n=0 started
	started=$(date +%s)
	say "resolving $name dependencies (downloads modules on the first run) ..."
	total=$(go list -deps "$pkg" | wc -l)
	say "building $name from $pkg ($total packages; the first build takes several minutes, log: $log)"
	: >"$log"
	local status=0
	CGO_ENABLED=0 go build -v -trimpath -buildvcs=false -ldflags "$ldflags" -o "$bin/.$name.tmp" "$pkg" 2>&1 |
		while IFS= read -r line; do
			printf '%s\n' "$line" >>"$log"
			n=$((n + 1))
			if ((n % 100 == 0)); then
				say "  $name: $n/$total packages compiled"
			fi
		done || status=$?
	if ((status != 0)) || [[ ! -x "$bin/.$name.tmp" ]]; then
		say "building $name failed; last lines of $log:"
		tail -n 40 "$log" >&2
		rm -f "$bin/.$name.tmp"
		exit 1
	fi
	mv -f "$bin/.$name.tmp" "$bin/$name"
	say "built $bin/$name in $(($(date +%s) - started))s"
}

if etcd_ok; then
	say "etcd $etcd_version already built"
else
	build etcd go.etcd.io/etcd/server/v3 "-s -w"
fi

# The same version stamps the Kubernetes release build sets, so /version, kubectl version
# and the compatibility-version logic see v1.X.Y instead of a dev placeholder.
v=${k8s_version#v}
major=${v%%.*}
minor=${v#*.}
minor=${minor%%.*}
k8s_ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	k8s_ldflags+=" -X $p.gitVersion=$k8s_version -X $p.gitMajor=$major -X $p.gitMinor=$minor"
	k8s_ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done

if apiserver_ok; then
	say "kube-apiserver $k8s_version already built"
else
	build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$k8s_ldflags"
fi

if controller_manager_ok; then
	say "kube-controller-manager $k8s_version already built"
else
	build kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager "$k8s_ldflags"
fi

if kubectl_ok; then
	say "kubectl $k8s_version already built"
else
	build kubectl k8s.io/kubernetes/cmd/kubectl "$k8s_ldflags"
fi

apiserver_ok || {
	say "$bin/kube-apiserver does not report version $k8s_version"
	exit 1
}
controller_manager_ok || {
	say "$bin/kube-controller-manager does not report version $k8s_version"
	exit 1
}
etcd_ok || {
	say "$bin/etcd does not report version $etcd_version"
	exit 1
}
kubectl_ok || {
	say "$bin/kubectl does not report version $k8s_version"
	exit 1
}
say "binaries ready"
echo "$bin"
