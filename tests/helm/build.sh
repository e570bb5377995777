#!/usr/bin/env bash
# Builds the real helm CLI that the chart tests run, from the version pinned in go.mod next
# to this script, into a cache outside the repository:
#
#   ${LITELLM_CACHE_DIR:-$HOME/.cache/litellm-operator}/helm-<version>/bin/helm
#
# A no-op when the binary is already there at the pinned version. Prints the bin dir on the
# last line of stdout (progress goes to stderr), so callers can do
#   LITELLM_HELM_BIN=$(bash tests/helm/build.sh)/helm
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here"

say() { printf '[helm] %s\n' "$*" >&2; }

# The single source of truth for the version is go.mod.
helm_version=$(awk '$1 == "require" { $1 = "" ; $0 = $0 } $1 == "helm.sh/helm/v3" && $2 ~ /^v/ { print $2 }' go.mod)
# The Kubernetes client modules helm is built against; helm stamps them into its default
# capabilities (what `helm template` assumes the cluster runs) exactly as its Makefile does.
client_go_version=$(awk '$1 == "k8s.io/client-go" { print $2 }' go.mod)
if [[ -z "$helm_version" || -z "$client_go_version" ]]; then
	say "could not read the pinned versions from $here/go.mod"
	exit 1
fi

cache=${LITELLM_CACHE_DIR:-$HOME/.cache/litellm-operator}
out="$cache/helm-${helm_version#v}"
bin="$out/bin"
mkdir -p "$bin"

helm_ok() {
	local output
	[[ -x "$bin/helm" ]] || return 1
	output=$("$bin/helm" version --template '{{ .Version }}' 2>/dev/null) || return 1
	[[ "$output" == "$helm_version" ]]
}

if helm_ok; then
	say "helm $helm_version already built"
	echo "$bin"
	exit 0
fi

if ! command -v go >/dev/null 2>&1; then
	say "go is required to build helm (go.mod asks for $(awk '$1 == "go" { print $2 }' go.mod) or newer)"
	exit 1
fi

# client-go v0.X.Y pairs with Kubernetes 1.X.
k8s_minor=${client_go_version#v0.}
k8s_minor=${k8s_minor%%.*}
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version"
ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for p in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
	ldflags+=" -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=$k8s_minor"
done

pkg=helm.sh/helm/v3/cmd/helm
log="$out/build-helm.log"
started=$(date +%s)
say "resolving helm dependencies (downloads modules on the first run) ..."
total=$(go list -deps "$pkg" | wc -l)
say "building helm $helm_version ($total packages; the first build takes a few minutes, log: $log)"
: >"$log"
status=0
n=0
CGO_ENABLED=0 go build -v -trimpath -buildvcs=false -ldflags "$ldflags" -o "$bin/.helm.tmp" "$pkg" 2>&1 |
	while IFS= read -r line; do
		printf '%s\n' "$line" >>"$log"
		n=$((n + 1))
		if ((n % 100 == 0)); then
			say "  helm: $n/$total packages compiled"
		fi
	done || status=$?
if ((status != 0)) || [[ ! -x "$bin/.helm.tmp" ]]; then
	say "building helm failed; last lines of $log:"
	tail -n 40 "$log" >&2
	rm -f "$bin/.helm.tmp"
	exit 1
fi
mv -f "$bin/.helm.tmp" "$bin/helm"
say "built $bin/helm in $(($(date +%s) - started))s"

helm_ok || {
	say "$bin/helm does not report version $helm_version"
	exit 1
}
say "helm ready"
echo "$bin"
