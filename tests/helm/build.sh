#!/usr/bin/env bash
# Builds the tools the chart tests run, from the versions pinned in go.mod next to this
# script, into a cache outside the repository:
#
#   ${LITELLM_CACHE_DIR:-$HOME/.cache/litellm-operator}/helm-<version>/bin/helm
#   ${LITELLM_CACHE_DIR:-$HOME/.cache/litellm-operator}/gopher-lua-<version>/bin/glua
#
# helm is the real CLI; glua is the command-line front end of gopher-lua, the Lua
# interpreter Argo CD embeds, which runs the resource health check of docs/gitops-argocd.md.
#
# A no-op when both are already there at the pinned versions. Prints helm's bin dir on the
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
lua_version=$(awk '$1 == "github.com/yuin/gopher-lua" { print $2 }' go.mod)
if [[ -z "$helm_version" || -z "$client_go_version" || -z "$lua_version" ]]; then
	say "could not read the pinned versions from $here/go.mod"
	exit 1
fi

cache=${LITELLM_CACHE_DIR:-$HOME/.cache/litellm-operator}
out="$cache/helm-${helm_version#v}"
bin="$out/bin"
mkdir -p "$bin"

lua_bin="$cache/gopher-lua-${lua_version#v}/bin"
mkdir -p "$lua_bin"

helm_ok() {
	local output
	[[ -x "$bin/helm" ]] || return 1
	output=$("$bin/helm" version --template '{{ .Version }}' 2>/dev/null) || return 1
	[[ "$output" == "$helm_version" ]]
}

# glua prints no module version; a stamp written after a successful build stands in for it.
lua_ok() {
	[[ -x "$lua_bin/glua" && "$(cat "$lua_bin/.version" 2>/dev/null)" == "$lua_version" ]] &&
		"$lua_bin/glua" -e 'assert(1 + 1 == 2)' >/dev/null 2>&1
}

if helm_ok && lua_ok; then
	say "helm $helm_version and gopher-lua $lua_version already built"
	echo "$bin"
	exit 0
fi

if ! command -v go >/dev/null 2>&1; then
	say "go is required to build helm and glua (go.mod asks for $(awk '$1 == "go" { print $2 }' go.mod) or newer)"
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

# build NAME PACKAGE LDFLAGS DIR: compiles PACKAGE into DIR/NAME, printing a progress line
# every 100 compiled packages. The full compiler output goes to build-NAME.log next to DIR.
build() {
	local name=$1 pkg=$2 ldflags=$3 dir=$4
	local log total n=0 started status=0
	log="$(dirname "$dir")/build-$name.log"
	started=$(date +%s)
	say "resolving $name dependencies (downloads modules on the first run) ..."
	total=$(go list -deps "$pkg" | wc -l)
	say "building $name from $pkg ($total packages; log: $log)"
	: >"$log"
	CGO_ENABLED=0 go build -v -trimpath -buildvcs=false -ldflags "$ldflags" -o "$dir/.$name.tmp" "$pkg" 2>&1 |
		while IFS= read -r line; do
			printf '%s\n' "$line" >>"$log"
			n=$((n + 1))
			if ((n % 100 == 0)); then
				say "  $name: $n/$total packages compiled"
			fi
		done || status=$?
	if ((status != 0)) || [[ ! -x "$dir/.$name.tmp" ]]; then
		say "building $name failed; last lines of $log:"
		tail -n 40 "$log" >&2
		rm -f "$dir/.$name.tmp"
		exit 1
	fi
	mv -f "$dir/.$name.tmp" "$dir/$name"
	say "built $dir/$name in $(($(date +%s) - started))s"
}

if helm_ok; then
	say "helm $helm_version already built"
else
	build helm helm.sh/helm/v3/cmd/helm "$ldflags" "$bin"
fi

if lua_ok; then
	say "gopher-lua $lua_version already built"
else
	rm -f "$lua_bin/.version"
	build glua github.com/yuin/gopher-lua/cmd/glua "-s -w" "$lua_bin"
	echo "$lua_version" >"$lua_bin/.version"
fi

helm_ok || {
	say "$bin/helm does not report version $helm_version"
	exit 1
}
lua_ok || {
	say "$lua_bin/glua does not run"
	exit 1
}
say "helm and gopher-lua ready"
echo "$bin"
