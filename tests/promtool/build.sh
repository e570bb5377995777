#!/usr/bin/env bash
# Builds Prometheus' promtool, which the chart tests run on the chart's alerting rules (`promtool check rules`,
# and `promtool test rules` with the series in alerts-test.yaml next to this script), into a cache outside the
# repository:
#
#   ${LITELLM_CACHE_DIR:-$HOME/.cache/litellm-operator}/promtool-<version>/bin/promtool
#
# The version is pinned below; `go install` builds it with the dependencies Prometheus' own go.mod and go.sum pin.
# The first build downloads about 160 modules and compiles for several minutes (promtool links Prometheus'
# service discovery); later runs are a no-op. Prints the bin dir on the last line of stdout (progress goes to
# stderr), so callers can do
#   LITELLM_PROMTOOL_BIN=$(bash tests/promtool/build.sh)/promtool
set -euo pipefail

# github.com/prometheus/prometheus v0.316.0 is Prometheus 3.16.0.
version=v0.316.0

say() { printf '[promtool] %s\n' "$*" >&2; }

cache=${LITELLM_CACHE_DIR:-$HOME/.cache/litellm-operator}
bin="$cache/promtool-${version#v}/bin"
mkdir -p "$bin"

# promtool built this way prints no version; a stamp written after a successful build stands in for it.
promtool_ok() {
	[[ -x "$bin/promtool" && "$(cat "$bin/.version" 2>/dev/null)" == "$version" ]] &&
		"$bin/promtool" --help >/dev/null 2>&1
}

if promtool_ok; then
	say "promtool $version already built"
	echo "$bin"
	exit 0
fi

if ! command -v go >/dev/null 2>&1; then
	say "go is required to build promtool"
	exit 1
fi

log="$(dirname "$bin")/build.log"
started=$(date +%s)
say "building promtool $version (the first time takes minutes; log: $log)"
rm -f "$bin/.version"
tmp=$(mktemp -d "$bin/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
if ! CGO_ENABLED=0 GOBIN="$tmp" GOFLAGS="${GOFLAGS:-} -buildvcs=false" go install -trimpath -ldflags '-s -w' \
	"github.com/prometheus/prometheus/cmd/promtool@$version" >"$log" 2>&1; then
	say "building promtool failed; last lines of $log:"
	tail -n 40 "$log" >&2
	exit 1
fi
mv -f "$tmp/promtool" "$bin/promtool"
echo "$version" >"$bin/.version"
promtool_ok || {
	say "$bin/promtool does not run"
	exit 1
}
say "built $bin/promtool in $(($(date +%s) - started))s"
echo "$bin"
