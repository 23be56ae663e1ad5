#!/usr/bin/env bash
# How projectclone's cost grows with the number of files.
#
#   benches/scale.sh                  100k, 300k and 1M small files (needs ~12 GB free at 1M)
#   QUICK=1 benches/scale.sh          2k, 6k and 20k files, for testing the harness
#   SIZES="100000 300000" benches/scale.sh     other sizes
#   WITH_RESTIC=1 benches/scale.sh    restic beside projectclone (installed from apt if missing)
#
# For each size N a deterministic tree of N files of 100 B..8 KiB is cut from real sources
# in the cargo registry (the generator of benches/compare.sh: 100 files per directory, 100
# directories per top directory; the first 100k files of the 300k tree are the 100k tree).
# Each tool then runs, with the page cache dropped before each step and a fresh repository:
#   backup      first backup of the tree
#   re-backup   unchanged re-backup
#   restore     restore of that snapshot into an empty directory on a freshly made ext4
#               (RESTORE_FS=fresh, the default, as in benches/compare.sh: this VM's disk is ext4
#               without a journal, where every create after mass deletion checks recently
#               deleted inodes one by one, and the previous size's trees were just deleted;
#               RESTORE_FS=disk restores into a directory on the disk as before)
# Columns: wall, user+sys CPU and peak RSS (/usr/bin/time); µs/file = wall / N; "per-file
# ×first" is µs/file divided by the same step's µs/file at the smallest N (about 1 or below:
# growth no faster than linear); "RSS ×first" is peak RSS over that at the smallest N, to be
# read against "N ×first". Tree, repositories and restore are removed between sizes.
# Output: printed and written to benches/results/<date>-<commit>-scale[-quick].md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
W=$ROOT/benches/work/scale
QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then SIZES=${SIZES:-2000 6000 20000}; else SIZES=${SIZES:-100000 300000 1000000}; fi
TOOLS=(projectclone)
[ "${WITH_RESTIC:-0}" = 1 ] && TOOLS+=(restic)
log() { echo "== $*" >&2; }

command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
RESTORE_FS=${RESTORE_FS:-fresh}
if [ "$RESTORE_FS" = fresh ]; then
  command -v mkfs.ext4 >/dev/null || { apt-get update -qq && apt-get install -y -qq e2fsprogs >/dev/null; }
fi
if [ "${WITH_RESTIC:-0}" = 1 ]; then
  command -v restic >/dev/null || { apt-get update -qq && apt-get install -y -qq restic >/dev/null; }
fi
PC=${PC:-$ROOT/target/release/projectclone}
[ -x "$PC" ] || cargo build --release -q
export PROJECTCLONE_PASSWORD=bench RESTIC_PASSWORD=bench

timed() { # CMD... -> LAST_WALL LAST_CPU LAST_RSS (MiB)
  sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
  if ! /usr/bin/time -f "%e %U %S %M" -o "$W/time" "$@" >/dev/null 2>"$W/err"; then
    echo "FAILED: $*" >&2; cat "$W/err" >&2; return 1
  fi
  read -r wall user sys rss <"$W/time"
  LAST_WALL=$wall LAST_CPU=$(awk -v u="$user" -v s="$sys" 'BEGIN{printf "%.2f", u+s}') LAST_RSS=$((rss / 1024))
}
run() { # TOOL STEP REPO TREE TARGET
  case $1:$2 in
    projectclone:init) "$PC" -q -r "$3" --cache-dir "$3.cache" init >/dev/null ;;
    projectclone:backup | projectclone:re-backup) timed "$PC" -q -r "$3" --cache-dir "$3.cache" backup "$4" ;;
    projectclone:restore) timed "$PC" -q -r "$3" --cache-dir "$3.cache" restore latest --target "$5" ;;
    restic:init) restic -q -r "$3" --cache-dir "$3.cache" init >/dev/null ;;
    restic:backup | restic:re-backup) timed restic -q -r "$3" --cache-dir "$3.cache" backup "$4" ;;
    restic:restore) timed restic -q -r "$3" --cache-dir "$3.cache" restore latest --target "$5" ;;
  esac
}

# Where a restore writes: `target_up N` makes an empty place and sets TARGET (not yet
# existing), `target_down` removes it.
MNT=$W-fs IMG=$W-fs.img
target_up() {
  if [ "$RESTORE_FS" = fresh ]; then
    # Twice the blocks the tree uses (not its bytes: each small file takes a 4 KiB block)
    # plus 1 GiB. Sized by bytes, the 300k tree filled 56% of its file system and the
    # restore took 7.5 s against 5.4 s in one sized like this (same CPU time).
    local bytes; bytes=$(du -sB1 "$W/tree" | cut -f1)
    # The loop device reads and writes its image with direct I/O, so a page is not cached
    # (and dirty) twice: otherwise the 1M restore's 4.9 GB passed the kernel's dirty limit and
    # waited for writeback (30.1 s against 20.6 s, 34.2 s of CPU against 28.7).
    rm -f "$IMG" && truncate -s $((bytes * 2 + (1 << 30))) "$IMG" \
      && mkfs.ext4 -q -F -N $(($1 * 2 + 10000)) "$IMG" && mkdir -p "$MNT" \
      && DEV=$(losetup -f --show --direct-io=on "$IMG") \
      && { mount "$DEV" "$MNT" || { losetup -d "$DEV"; false; }; } && TARGET=$MNT/out && return 0
    log "cannot mount a fresh file system (root and a loop device needed): RESTORE_FS=disk"
    rm -f "$IMG"; RESTORE_FS=disk
  fi
  rm -rf "$W/restore" && TARGET=$W/restore
}
target_down() {
  if [ "$RESTORE_FS" = fresh ]; then umount "$MNT" && losetup -d "$DEV" && DEV= && rm -f "$IMG"; else rm -rf "$W/restore"; fi
}
trap 'mountpoint -q "$MNT" 2>/dev/null && umount "$MNT"; [ -n "${DEV:-}" ] && losetup -d "$DEV"; rm -f "$IMG"' EXIT

declare -A DISK
ROWS=()   # "N tool step wall cpu rss"
for N in $SIZES; do
  rm -rf "$W" && mkdir -p "$W"
  log "generating $N files"
  benches/compare.sh --gen small "$W/tree" "$N"
  size=$(du -sh "$W/tree" | cut -f1)
  log "$N files, $size on disk"
  for t in "${TOOLS[@]}"; do
    run "$t" init "$W/$t"
    for step in backup re-backup restore; do
      log "$N files: $t $step"
      [ "$step" != restore ] || target_up "$N"
      run "$t" "$step" "$W/$t" "$W/tree" "${TARGET:-}"
      [ "$step" != restore ] || target_down
      ROWS+=("$N $t $step $LAST_WALL $LAST_CPU $LAST_RSS")
    done
    rm -rf "$W/$t" "$W/$t.cache"
  done
  DISK[$N]=$size
done
rm -rf "$W"

OUT=benches/results/$(date +%F)-$(git rev-parse --short HEAD)-scale$([ "$QUICK" = 1 ] && echo -quick || true).md
{
  echo "# scale.sh$([ "$QUICK" = 1 ] && echo " (QUICK)" || true) $(date -Iseconds), commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || echo "+dirty")"
  echo
  echo "machine: $(nproc) cores, $(free -g | awk '/Mem/{print $2}') GiB, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $("$PC" --version)"
  echo
  echo "trees: $(for N in $SIZES; do printf '%s files %s; ' "$N" "${DISK[$N]}"; done | sed 's/; $//')"
  echo
  echo "restores: $([ "$RESTORE_FS" = fresh ] && echo "each into a freshly made ext4 (journal on) on a loop device with direct I/O" || echo "into a directory on the disk")"
  echo
  echo "| files | tool | step | wall s | µs/file | per-file ×first | CPU s | peak RSS MiB | RSS ×first | N ×first |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${ROWS[@]}" | awk '
    { key = $2 " " $3
      if (!(key in n0)) { n0[key] = $1; w0[key] = $4; r0[key] = $6 }
      us = $4 * 1e6 / $1; us0 = w0[key] * 1e6 / n0[key]
      printf "| %d | %s | %s | %.2f | %.1f | %s | %.2f | %d | %.2f | %.0f |\n", $1, $2, $3, $4, us,
        (us0 > 0 ? sprintf("%.2f", us / us0) : "-"), $5, $6, (r0[key] > 0 ? $6 / r0[key] : 0), $1 / n0[key] }' |
    sort -t"|" -k3,3 -k4,4 -k2,2n
} | tee "$OUT"
log "written to $OUT"
