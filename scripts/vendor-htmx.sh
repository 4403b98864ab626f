#!/usr/bin/env bash
# Re-fetches the dashboard's vendored front-end files from the npm registry
# and verifies them: each tarball against the sha512 integrity pinned in
# internal/dashboard/static/vendor/INTEGRITY (and the registry's own
# dist.integrity), each extracted file against its recorded sha256.
#   scripts/vendor-htmx.sh          verify the committed files
#   scripts/vendor-htmx.sh --write  re-extract them (after a pin change)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=internal/dashboard/static/vendor
pins=$dir/INTEGRITY
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
write=${1:-}
while read -r kind a b c; do
  case "$kind" in
    package) # package <name@version> <sha512-integrity>
      pkg=$a want=$b
      tgz=$(cd "$tmp" && npm pack --silent "$pkg")
      got="sha512-$(openssl dgst -sha512 -binary "$tmp/$tgz" | base64 -w0)"
      [ "$got" = "$want" ] || { echo "$pkg: tarball integrity $got, pinned $want" >&2; exit 1; }
      reg=$(npm view "$pkg" dist.integrity)
      [ "$reg" = "$want" ] || { echo "$pkg: registry says $reg, pinned $want" >&2; exit 1; }
      mkdir -p "$tmp/$pkg" && tar xzf "$tmp/$tgz" -C "$tmp/$pkg"
      ;;
    file) # file <name@version> <path in package> <sha256> -> vendor/<base name>
      pkg=$a src=$b sum=$c
      out=$dir/$(basename "$src")
      [ "$write" = --write ] && cp "$tmp/$pkg/package/$src" "$out"
      cmp -s "$tmp/$pkg/package/$src" "$out" || { echo "$out differs from $pkg's $src" >&2; exit 1; }
      echo "$sum  $out" | sha256sum -c --quiet - || exit 1
      ;;
    ''|'#'*) ;;
  esac
done < "$pins"
echo "vendored files verified against $pins"
