#!/usr/bin/env bash
# Reproduces static/vendor/ from the npm registry: the dashboard never loads anything from a CDN.
set -euo pipefail
cd "$(dirname "$0")/.."
HTMX=2.0.11 ECHARTS=6.1.0 BOOTSTRAP=5.3.9
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "htmx.org@$HTMX" "echarts@$ECHARTS" "bootstrap@$BOOTSTRAP" >/dev/null)
for f in "$tmp"/*.tgz; do tar -xzf "$f" -C "$tmp" && mv "$tmp/package" "$tmp/$(basename "$f" .tgz)"; done
out=static/vendor
mkdir -p "$out"
cp "$tmp/htmx.org-$HTMX/dist/htmx.min.js" "$out/htmx.min.js"
cp "$tmp/echarts-$ECHARTS/dist/echarts.min.js" "$out/echarts.min.js"
cp "$tmp/bootstrap-$BOOTSTRAP/dist/css/bootstrap.min.css" "$out/bootstrap.min.css"
cp "$tmp/bootstrap-$BOOTSTRAP/dist/js/bootstrap.bundle.min.js" "$out/bootstrap.bundle.min.js"
# Source maps are not shipped: drop their references (the manifest storage would look for the files).
sed -i -E '/sourceMappingURL=/d' "$out/bootstrap.min.css" "$out/bootstrap.bundle.min.js"
printf 'htmx.org %s\necharts %s\nbootstrap %s\n' "$HTMX" "$ECHARTS" "$BOOTSTRAP" > "$out/VERSIONS"
echo "vendored into $out: $(tr '\n' ' ' < "$out/VERSIONS")"
