#!/usr/bin/env bash
# End-to-end comparison of projectclone with restic and borg on the same data.
#
#   benches/compare.sh [CORPUS_DIR]
#
# Without CORPUS_DIR a corpus is built under benches/work/corpus from data present on a
# fresh machine of this kind: the Rust toolchain's sysroot, a copy of the cargo registry
# sources with a git history (.git), a Python virtualenv with binary wheels from PyPI, and
# this project's release `target/` folder. Encryption on, default compression for each tool.
# Prints one markdown table (wall s, user+sys CPU s, peak RSS MiB, repository size) and
# writes it to benches/results/<date>-<commit>.md. Timings belong here, never in tests.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=$ROOT/benches/work
mkdir -p "$WORK" benches/results

need() { command -v "$1" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$2" >/dev/null; }; }
need restic restic
need borg borgbackup
need /usr/bin/time time

cargo build --release -q
PC=$ROOT/target/release/projectclone

CORPUS=${1:-$WORK/corpus}
if [ ! -d "$CORPUS" ]; then
  mkdir -p "$CORPUS"
  sysroot=$(rustc --print sysroot)
  cp -a "$sysroot/lib/rustlib" "$CORPUS/rustlib" 2>/dev/null || true
  cp -a "$(ls -d ~/.cargo/registry/src/*/ | head -1)" "$CORPUS/vendor"
  (cd "$CORPUS/vendor" && git init -q && git add -A >/dev/null && git -c user.email=b@b -c user.name=b commit -qm corpus)
  python3 -m venv "$CORPUS/venv" && "$CORPUS/venv/bin/pip" install -q numpy pandas
  mkdir -p "$CORPUS/target" && cp -a "$ROOT/target/release/deps" "$CORPUS/target/"
fi

export PROJECTCLONE_PASSWORD=bench RESTIC_PASSWORD=bench BORG_PASSPHRASE=bench
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
R=$WORK/run
rm -rf "$R" && mkdir -p "$R"

ROWS=()
# measure NAME TOOL CMD... : appends "| NAME | TOOL | wall | cpu | rss |"
measure() {
  local name=$1 tool=$2; shift 2
  sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
  /usr/bin/time -f "%e %U %S %M" -o "$R/time" "$@" >/dev/null 2>"$R/err" || { cat "$R/err" >&2; return 1; }
  read -r wall user sys rss <"$R/time"
  ROWS+=("| $name | $tool | $wall | $(echo "$user + $sys" | bc) | $((rss / 1024)) |")
}

"$PC" -q -r "$R/pc" --cache-dir "$R/pcc" init
restic init -q -r "$R/rs"
borg init -e repokey-blake2 "$R/bg"
measure "initial backup" projectclone "$PC" -r "$R/pc" --cache-dir "$R/pcc" backup "$CORPUS"
measure "initial backup" restic restic -q -r "$R/rs" backup "$CORPUS"
measure "initial backup" borg borg create "$R/bg::a" "$CORPUS"
measure "unchanged re-backup" projectclone "$PC" -r "$R/pc" --cache-dir "$R/pcc" backup "$CORPUS"
measure "unchanged re-backup" restic restic -q -r "$R/rs" backup "$CORPUS"
measure "unchanged re-backup" borg borg create "$R/bg::b" "$CORPUS"
measure "restore" projectclone "$PC" -r "$R/pc" --cache-dir "$R/pcc" restore latest --target "$R/out-pc"
measure "restore" restic restic -q -r "$R/rs" restore latest --target "$R/out-rs"
measure "restore" borg sh -c "mkdir -p '$R/out-bg' && cd '$R/out-bg' && borg extract '$R/bg::b'"
measure "check --read-data" projectclone "$PC" -r "$R/pc" --cache-dir "$R/pcc" check --read-data
measure "check --read-data" restic restic -q -r "$R/rs" check --read-data
measure "check --read-data" borg borg check --verify-data "$R/bg"
measure "limit: tar \\| zstd -3 -T2" tar sh -c "tar cf - -C '$CORPUS' . | zstd -q -3 -T2 > '$R/ref.tar.zst'"
measure "limit: stat walk" find find "$CORPUS" -printf "%s %T@\n"

size() { du -sb "$1" | cut -f1; }
OUT=benches/results/$(date +%F)-$(git rev-parse --short HEAD).md
{
  echo "# compare.sh $(date -Iseconds), commit $(git rev-parse --short HEAD), $(nproc) cores, $(free -g | awk '/Mem/{print $2}') GiB"
  echo
  echo "corpus: $CORPUS, $(du -sh "$CORPUS" | cut -f1), $(find "$CORPUS" | wc -l) entries"
  echo
  echo "| step | tool | wall s | CPU s | peak RSS MiB |"
  echo "|---|---|---|---|---|"
  printf '%s\n' "${ROWS[@]}"
  echo
  echo "| repository | bytes |"
  echo "|---|---|"
  echo "| projectclone | $(size "$R/pc") |"
  echo "| restic | $(size "$R/rs") |"
  echo "| borg | $(size "$R/bg") |"
  echo "| tar \| zstd -3 | $(size "$R/ref.tar.zst") |"
} | tee "$OUT"
