#!/usr/bin/env bash
# Build a release: a stripped binary in a tarball with its SHA-256, and a .deb.
#
#   scripts/release.sh [--binary PATH] [--out DIR] [--no-deb]
#
# Without --binary it builds `cargo build --release --locked` first; with it, that binary is
# packaged as it is (the test suite packages its own build this way). Writes into DIR
# (default dist/):
#   projectclone-VERSION-x86_64-unknown-linux-gnu.tar.gz   the binary, README.md,
#       CHANGELOG.md, LICENSE notice, man pages and shell completions, in one folder
#   projectclone-VERSION-x86_64-unknown-linux-gnu.tar.gz.sha256   `sha256sum` format
#   projectclone_VERSION-1_amd64.deb (+ .sha256)   with `cargo deb` (cargo install cargo-deb),
#       unless --no-deb
# VERSION is Cargo.toml's. The GitHub Action (action.yml) installs the tarball after checking
# its .sha256.
set -euo pipefail
cd "$(dirname "$0")/.."
bin= out=dist deb=1
while [ $# -gt 0 ]; do
  case $1 in
    --binary) bin=$(realpath "$2"); shift 2 ;;
    --out) out=$2; shift 2 ;;
    --no-deb) deb=0; shift ;;
    *) echo "usage: scripts/release.sh [--binary PATH] [--out DIR] [--no-deb]" >&2; exit 2 ;;
  esac
done
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
target=x86_64-unknown-linux-gnu
[ "$(uname -s)-$(uname -m)" = Linux-x86_64 ] || { echo "releases are built on Linux x86_64" >&2; exit 1; }
if [ -z "$bin" ]; then
  cargo build --release --locked
  bin=$PWD/target/release/projectclone
fi
"$bin" --version | grep -q "^projectclone $version " ||
  { echo "$bin is not projectclone $version: $("$bin" --version | head -n 1)" >&2; exit 1; }
mkdir -p "$out"
out=$(realpath "$out")
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
name=projectclone-$version-$target
dir=$stage/$name
mkdir -p "$dir/man" "$dir/completions"
cp "$bin" "$dir/projectclone"
strip "$dir/projectclone"
cp README.md CHANGELOG.md "$dir/"
printf 'projectclone %s is dual-licensed under the MIT license or the Apache License 2.0, at your option.\n' \
  "$version" >"$dir/LICENSE"
"$dir/projectclone" man --dir "$dir/man" >/dev/null
for sh in bash zsh fish; do "$dir/projectclone" completions "$sh" >"$dir/completions/projectclone.$sh"; done
# Reproducible archive: sorted names, fixed owner and times.
mtime=$(git log -1 --format=%ct 2>/dev/null || echo 0)
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$mtime" -C "$stage" -cf - "$name" |
  gzip -9n >"$out/$name.tar.gz"
(cd "$out" && sha256sum "$name.tar.gz" >"$name.tar.gz.sha256")
echo "$out/$name.tar.gz"
if [ "$deb" = 1 ]; then
  command -v cargo-deb >/dev/null || { echo "cargo-deb is missing: cargo install cargo-deb (or --no-deb)" >&2; exit 1; }
  # cargo deb takes its files from target/release-assets (Cargo.toml, [package.metadata.deb]).
  rm -rf target/release-assets && mkdir -p target/release-assets
  cp -r "$dir/projectclone" "$dir/man" "$dir/completions" target/release-assets/
  debfile=$(cargo deb --no-build --no-strip --output "$out" 2>/dev/null | tail -n 1)
  [ -f "$debfile" ] || { echo "cargo deb made no package" >&2; exit 1; }
  (cd "$out" && sha256sum "$(basename "$debfile")" >"$(basename "$debfile").sha256")
  echo "$debfile"
fi
