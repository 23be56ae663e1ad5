#!/usr/bin/env bash
# End-to-end comparison of projectclone with restic, borg and rustic on the same data.
#
#   benches/compare.sh [CORPUS_DIR]          full run (hours on 2 cores; needs ~15 GB free)
#   QUICK=1 benches/compare.sh [CORPUS_DIR]  tiny run for testing the harness (~1-2 minutes)
#
# Environment: QUICK=1 (tiny sizes), TOOLS="projectclone restic borg rustic" (subset/order),
# SKIP="series big refs" (leave out parts), RUSTIC=/path/to/rustic, PC=/path/to/projectclone,
# RESTORE_RUNS=5, SERIES_VERSIONS=15, BIG_MIB=2048, SMALL_FILES=100000, KEEP=1 (keep
# benches/work/run: the data copy and the repositories).
#
# The corpus. Without CORPUS_DIR one is built once under benches/work/corpus-src from data
# present on a fresh machine of this kind: the Rust toolchain's sysroot `lib/`, the cargo
# registry sources committed into a git repository (a checkout with `.git`), a virtualenv with
# numpy and pandas binary wheels from PyPI, and this project's release `target/deps`. (QUICK:
# a clone of this repository with its `.git` plus a 15 MB slice of the sysroot.) Every run
# copies that corpus (or the caller's CORPUS_DIR, never modified) to benches/work/run/data and
# adds `small-files/`: a deterministic tree of SMALL_FILES files of 100 B..8 KiB cut from real
# sources in the cargo registry, 100 files per directory. The "1% changed" step edits that
# copy: every 100th regular file in sorted path order gets 32 bytes inserted at its middle.
#
# Rows of the timing table (encryption on, default compression of each tool, page cache
# dropped before every timed command; each tool has its own repository and cache):
#   initial backup       first backup of the corpus into an empty repository
#   unchanged re-backup  second backup, nothing changed
#   1% changed backup    third backup after the 1% edit above
#   restore              restore of the latest snapshot into an empty directory: median wall of
#                        RESTORE_RUNS runs, interleaved (tool order rotated every round); CPU and
#                        RSS are those of the median run. Where restores go: see RESTORE_FS below
#   check --read-data    full verification reading every pack (borg: check --verify-data)
#   15-version series    SERIES_VERSIONS successive Django releases (sdists from PyPI, ~70 MB,
#                        ~6,800 files each), each extracted over the same directory and backed
#                        up into one fresh repository per tool: sum of wall and CPU, max RSS
#   2 GB file: initial / after 1 KiB insert   a deterministic BIG_MIB file (real corpus bytes,
#                        random and zero runs) backed up into a fresh repository, then again
#                        after 1 KiB is inserted at offset 4096
#   limit: ...           references, not backup tools: `tar | zstd -3 -T2` of the corpus (vs
#                        initial backup), a bare stat walk `find -printf` (vs unchanged
#                        re-backup), `cp -a` of the corpus (vs restore)
# RESTORE_FS=fresh (default): each restore, and the `cp -a` reference, writes into a file
# system of its own, made for it just before: ext4 as `mkfs.ext4` makes it (with a journal) in
# a sparse image on a loop device, unmounted and removed afterwards (needs root; without a
# loop device it falls back to `disk` and says so in the report). RESTORE_FS=disk: into
# benches/work/run/restore on the disk itself, removed before each run (the method of the
# results before 2026-11-26-18ee8cb). This VM's disk is ext4 *without* a journal, and that
# ext4 skips, on every create, free inodes deleted in the last 60 s (360 s while their
# inode-table block is dirty, which a create next to them makes it), checking them one by one
# (`recently_deleted`, only without a journal; RECENTCY_MIN 60 and RECENTCY_DIRTY 300 since
# Linux 5.7). Removing 130,000 restored entries seconds before the next restore made every
# tool pay for that scan, by an amount that changed from run to run (projectclone's restore
# CPU 5.2-8.0 s, rustic's 10.2-13.6 s in runs of the same code); a fresh file system measures
# the tools instead.
# Ratios are tool / projectclone: above 1 means projectclone is faster, leaner or smaller.
# The size table gives repository bytes after the initial backup and after all three
# backups, the series total, and the growth from the 1 KiB insertion into the 2 GB file.
# Output: one markdown report, printed and written to benches/results/<date>-<commit>[-quick].md.
# Timings belong here, never in tests.
set -euo pipefail

# ---------------------------------------------------------------------------------------------
# Data generators (deterministic). Also used by benches/scale.sh: `compare.sh --gen small DEST N`.
GEN_PY=$(cat <<'PYEOF'
import math, os, random, shutil, sys

TEXT = {'.rs', '.toml', '.md', '.c', '.h', '.py', '.txt', '.json', '.yml', '.yaml', '.html',
        '.js', '.css', '.sh', '.in', '.cc', '.cpp', '.hpp', '.go', '.s', '.S', '.pyi', '.cfg'}

def walk_files(root):
    """Regular files under root in sorted path order (symlinks skipped)."""
    out = []
    for d, dirs, files in os.walk(root):
        dirs.sort()
        for f in sorted(files):
            p = os.path.join(d, f)
            if os.path.isfile(p) and not os.path.islink(p):
                out.append(p)
    return out

def small(dest, n, pool_root, seed=1):
    """n files of 100 B..8 KiB cut from real text files under pool_root; 100 files per
    leaf directory, 100 leaf directories per top directory."""
    pool = [p for p in walk_files(pool_root)
            if os.path.splitext(p)[1] in TEXT and os.path.getsize(p) >= 64]
    if not pool:
        sys.exit(f"no text files under {pool_root}")
    rng = random.Random(seed)
    for i in range(n):
        d = os.path.join(dest, f"pkg{i // 10000:03d}", f"mod{(i // 100) % 100:02d}")
        if i % 100 == 0:
            os.makedirs(d, exist_ok=True)
        size = int(min(8192, max(100, rng.lognormvariate(math.log(1800), 0.9))))
        first = j = rng.randrange(len(pool))
        parts, need = [], size
        while need > 0:                   # a slice of one file, continued into the next ones
            with open(pool[j], 'rb') as f:
                if j == first and not parts:
                    sz = os.fstat(f.fileno()).st_size
                    if sz > size:
                        f.seek(rng.randrange(sz - size))
                b = f.read(need)
            parts.append(b)
            need -= len(b)
            j = (j + 1) % len(pool)
        base, ext = os.path.splitext(os.path.basename(pool[first]))
        with open(os.path.join(d, f"{base[:24]}_{i % 100:02d}{ext}"), 'wb') as f:
            f.write(b''.join(parts))

def change(root, every=100, phase=37):
    """Insert 32 bytes in the middle of every `every`-th regular file (sorted order)."""
    n = 0
    for i, p in enumerate(walk_files(root)):
        if i % every != phase:
            continue
        with open(p, 'r+b') as f:
            data = f.read()
            mid = len(data) // 2
            f.seek(mid)
            f.write((b"/* bench edit %d" % i).ljust(29) + b"*/\n" + data[mid:])
        n += 1
    print(n)

def big(dest, mib, pool_root, seed=2):
    """A deterministic file of `mib` MiB: runs of real bytes (the files under pool_root read
    in sorted order, cycling), random runs (incompressible, like media or packed objects)
    and zero runs (like preallocated space): roughly 60/25/15 percent."""
    pool = walk_files(pool_root)
    rng = random.Random(seed)
    total, left, pi, src = mib << 20, mib << 20, 0, None
    with open(dest, 'wb') as out:
        while left > 0:
            kind = rng.random()
            n = min(left, rng.randrange(64 << 10, 4 << 20))
            if kind < 0.60:
                got = 0
                while got < n:
                    if src is None:
                        src = open(pool[pi % len(pool)], 'rb'); pi += 1
                    b = src.read(min(n - got, 1 << 20))
                    if not b:
                        src.close(); src = None; continue
                    out.write(b); got += len(b)
            elif kind < 0.85:
                out.write(rng.randbytes(n))
            else:
                out.write(bytes(n))
            left -= n

def insert(path, offset, nbytes, seed=3):
    """Rewrite path with nbytes deterministic random bytes inserted at offset."""
    tmp = path + '.tmp'
    with open(path, 'rb') as src, open(tmp, 'wb') as dst:
        dst.write(src.read(offset))
        dst.write(random.Random(seed).randbytes(nbytes))
        shutil.copyfileobj(src, dst, 8 << 20)
    shutil.copystat(path, tmp)
    os.replace(tmp, path)

def slice_copy(src_root, dest, mib):
    """Copy files of src_root (sorted order) that fit in `mib` MiB, keeping the layout."""
    left = mib << 20
    for p in walk_files(src_root):
        if os.path.getsize(p) > min(left, 4 << 20):
            continue
        q = os.path.join(dest, os.path.relpath(p, src_root))
        os.makedirs(os.path.dirname(q), exist_ok=True)
        shutil.copy2(p, q)
        left -= os.path.getsize(p)

cmd, args = sys.argv[1], sys.argv[2:]
if cmd == 'small':  small(args[0], int(args[1]), args[2])
elif cmd == 'change': change(args[0])
elif cmd == 'big':  big(args[0], int(args[1]), args[2])
elif cmd == 'insert': insert(args[0], int(args[1]), int(args[2]))
elif cmd == 'slice': slice_copy(args[0], args[1], int(args[2]))
else: sys.exit(f"unknown generator {cmd}")
PYEOF
)
gen() { python3 -c "$GEN_PY" "$@"; }
# Real text files to cut small files from: the cargo registry sources (present after any
# cargo build), else the toolchain's sysroot.
pool_dir() {
  local d
  d=$(ls -d ~/.cargo/registry/src/*/ 2>/dev/null | head -1)
  echo "${d:-$(rustc --print sysroot)}"
}
if [ "${1:-}" = --gen ]; then
  shift
  case $1 in
    small) gen small "$2" "$3" "$(pool_dir)" ;;
    *) gen "$@" ;;
  esac
  exit
fi

# ---------------------------------------------------------------------------------------------
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=$ROOT/benches/work
mkdir -p "$WORK" benches/results

QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
  SMALL_FILES=${SMALL_FILES:-2000} BIG_MIB=${BIG_MIB:-20} SERIES_VERSIONS=${SERIES_VERSIONS:-3}
  RESTORE_RUNS=${RESTORE_RUNS:-2}
else
  SMALL_FILES=${SMALL_FILES:-100000} BIG_MIB=${BIG_MIB:-2048} SERIES_VERSIONS=${SERIES_VERSIONS:-15}
  RESTORE_RUNS=${RESTORE_RUNS:-5}
fi
TOOLS=(${TOOLS:-projectclone restic borg rustic})
SKIP=${SKIP:-}
skip() { [[ " $SKIP " == *" $1 "* ]]; }
log() { echo "== $*" >&2; }

# --- peers and references, installed if missing ----------------------------------------------
need() { command -v "$1" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$2" >/dev/null; }; }
need /usr/bin/time time
need zstd zstd
need python3 python3
RESTORE_FS=${RESTORE_FS:-fresh}
[ "$RESTORE_FS" = fresh ] && need mkfs.ext4 e2fsprogs
for t in "${TOOLS[@]}"; do
  case $t in
    restic) need restic restic ;;
    borg) need borg borgbackup ;;
    rustic)
      if command -v rustic >/dev/null; then RUSTIC=$(command -v rustic)
      elif [ -n "${RUSTIC:-}" ] && [ -x "$RUSTIC" ]; then :
      elif [ -x "$WORK/tools/bin/rustic" ]; then RUSTIC=$WORK/tools/bin/rustic
      else
        log "installing rustic (cargo install rustic-rs --locked), this takes a while"
        cargo install -q rustic-rs --locked --root "$WORK/tools"
        RUSTIC=$WORK/tools/bin/rustic
      fi ;;
  esac
done
PC=${PC:-$ROOT/target/release/projectclone}
[ -x "$PC" ] || cargo build --release -q

# --- corpus -----------------------------------------------------------------------------------
if [ -n "${1:-}" ]; then
  CORPUS=$(cd "$1" && pwd)
else
  CORPUS=$WORK/corpus-src$([ "$QUICK" = 1 ] && echo -quick || true)
  if [ ! -e "$CORPUS/.complete" ]; then
    log "building corpus $CORPUS"
    rm -rf "$CORPUS" && mkdir -p "$CORPUS"
    sysroot=$(rustc --print sysroot)
    git clone -q --no-local "$ROOT" "$CORPUS/projectclone-git"
    if [ "$QUICK" = 1 ]; then
      gen slice "$sysroot/lib" "$CORPUS/sysroot-lib" 15
    else
      cp -a "$sysroot/lib" "$CORPUS/sysroot-lib"
      cp -a "$(pool_dir)" "$CORPUS/vendor"
      (cd "$CORPUS/vendor" && git init -q && git add -A >/dev/null &&
        git -c user.email=b@b -c user.name=b commit -qm corpus)
      python3 -m venv "$CORPUS/venv" && "$CORPUS/venv/bin/pip" install -q numpy pandas
      mkdir -p "$CORPUS/target/release" && cp -a "$ROOT/target/release/deps" "$CORPUS/target/release/"
    fi
    touch "$CORPUS/.complete"
  fi
fi

export PROJECTCLONE_PASSWORD=bench RESTIC_PASSWORD=bench BORG_PASSPHRASE=bench RUSTIC_PASSWORD=bench
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
R=$WORK/run
rm -rf "$R" && mkdir -p "$R"
export BORG_BASE_DIR=$R/borg-home   # borg's cache and security dirs stay inside the run

DATA=$R/data
log "copying corpus to $DATA and adding $SMALL_FILES small files"
cp -a "$CORPUS/." "$DATA/"
rm -f "$DATA/.complete"
[ ! -e "$DATA/small-files" ] || { echo "corpus already has small-files/" >&2; exit 1; }
gen small "$DATA/small-files" "$SMALL_FILES" "$(pool_dir)"

# --- measurement ------------------------------------------------------------------------------
declare -A WALL CPU RSS SEEN
STEPS=()
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }
# timed STEP TOOL CMD... : runs CMD with a cold page cache; records wall, user+sys, peak RSS.
timed() {
  local step=$1 tool=$2; shift 2
  drop_caches
  if ! /usr/bin/time -f "%e %U %S %M" -o "$R/time" "$@" >"$R/out" 2>"$R/err"; then
    echo "FAILED: $step / $tool: $*" >&2; cat "$R/err" >&2; return 1
  fi
  read -r wall user sys rss <"$R/time"
  LAST_WALL=$wall LAST_CPU=$(awk -v u="$user" -v s="$sys" 'BEGIN{printf "%.2f", u+s}') LAST_RSS=$((rss / 1024))
}
record() { # record STEP TOOL WALL CPU RSS
  [ -n "${SEEN[$1]:-}" ] || { SEEN[$1]=1; STEPS+=("$1"); }
  WALL[$1|$2]=$3 CPU[$1|$2]=$4 RSS[$1|$2]=$5
}
measure() { timed "$@"; record "$1" "$2" "$LAST_WALL" "$LAST_CPU" "$LAST_RSS"; }
bytes() { du -sb "$1" | cut -f1; }

# Per-tool commands. Repository REPO; cache in REPO.cache; LABEL names borg archives.
init_repo() { # TOOL REPO
  case $1 in
    projectclone) "$PC" -q -r "$2" --cache-dir "$2.cache" init ;;
    restic) restic -q -r "$2" --cache-dir "$2.cache" init ;;
    borg) borg init -e repokey-blake2 "$2" ;;
    rustic) "$RUSTIC" -r "$2" --cache-dir "$2.cache" --no-progress init ;;
  esac >/dev/null 2>&1
}
backup_cmd() { # TOOL REPO DIR LABEL -> CMD
  case $1 in
    projectclone) CMD=("$PC" -q -r "$2" --cache-dir "$2.cache" backup "$3") ;;
    restic) CMD=(restic -q -r "$2" --cache-dir "$2.cache" backup "$3") ;;
    borg) CMD=(borg create "$2::$4" "$3") ;;
    rustic) CMD=("$RUSTIC" -r "$2" --cache-dir "$2.cache" --no-progress backup "$3") ;;
  esac
}
restore_cmd() { # TOOL REPO TARGET LABEL -> CMD
  case $1 in
    projectclone) CMD=("$PC" -q -r "$2" --cache-dir "$2.cache" restore latest --target "$3") ;;
    restic) CMD=(restic -q -r "$2" --cache-dir "$2.cache" restore latest --target "$3") ;;
    borg) CMD=(sh -c 'mkdir -p "$1" && cd "$1" && exec borg extract "$2"' sh "$3" "$2::$4") ;;
    rustic) CMD=("$RUSTIC" -r "$2" --cache-dir "$2.cache" --no-progress restore latest "$3") ;;
  esac
}
check_cmd() { # TOOL REPO -> CMD
  case $1 in
    projectclone) CMD=("$PC" -q -r "$2" --cache-dir "$2.cache" check --read-data) ;;
    restic) CMD=(restic -q -r "$2" --cache-dir "$2.cache" check --read-data) ;;
    borg) CMD=(borg check --verify-data "$2") ;;
    rustic) CMD=("$RUSTIC" -r "$2" --cache-dir "$2.cache" --no-progress check --read-data) ;;
  esac
}
declare -A SIZE1 SIZE3 SERIES GROWTH

# --- main corpus: backups, restore, check ------------------------------------------------------
for t in "${TOOLS[@]}"; do init_repo "$t" "$R/$t"; done
for t in "${TOOLS[@]}"; do
  log "initial backup: $t"
  backup_cmd "$t" "$R/$t" "$DATA" a1; measure "initial backup" "$t" "${CMD[@]}"
  SIZE1[$t]=$(bytes "$R/$t")
done
for t in "${TOOLS[@]}"; do
  log "unchanged re-backup: $t"
  backup_cmd "$t" "$R/$t" "$DATA" a2; measure "unchanged re-backup" "$t" "${CMD[@]}"
done
CHANGED=$(gen change "$DATA")
for t in "${TOOLS[@]}"; do
  log "1% changed backup: $t"
  backup_cmd "$t" "$R/$t" "$DATA" a3; measure "1% changed backup" "$t" "${CMD[@]}"
  SIZE3[$t]=$(bytes "$R/$t")
done

# Where restores (and `cp -a`) write: `target_up` makes an empty place and sets TARGET (not
# yet existing: each tool creates it), `target_down` removes it. See RESTORE_FS above.
MNT=$R/restore-fs IMG=$R/restore.img
FS_BYTES=$(( $(bytes "$DATA") * 2 + (1 << 30) )) FS_INODES=$(( $(find "$DATA" | wc -l) * 2 + 10000 ))
target_up() {
  if [ "$RESTORE_FS" = fresh ]; then
    rm -f "$IMG" && truncate -s "$FS_BYTES" "$IMG" && mkfs.ext4 -q -F -N "$FS_INODES" "$IMG" \
      && mkdir -p "$MNT" && mount -o loop "$IMG" "$MNT" && TARGET=$MNT/out && return 0
    log "cannot mount a fresh file system (root and a loop device needed): RESTORE_FS=disk"
    rm -f "$IMG"; RESTORE_FS=disk
  fi
  # Sync and a pause take the first edge off the scan of recently deleted inodes.
  rm -rf "$R/restore" && sync && sleep 6 && TARGET=$R/restore
}
target_down() {
  if [ "$RESTORE_FS" = fresh ]; then umount "$MNT" && rm -f "$IMG"; else rm -rf "$R/restore"; fi
}
trap 'mountpoint -q "$MNT" 2>/dev/null && umount "$MNT"; rm -f "$IMG"' EXIT

declare -A RUNS
tree_sum() { find "$1" -type f -printf '%s\n' | awk '{n++; s+=$1} END{print n, s}'; }
WANT=$(tree_sum "$DATA") BAD=
n=${#TOOLS[@]}
for ((round = 0; round < RESTORE_RUNS; round++)); do
  for ((k = 0; k < n; k++)); do
    t=${TOOLS[(k + round) % n]}
    log "restore round $((round + 1))/$RESTORE_RUNS: $t"
    target_up
    restore_cmd "$t" "$R/$t" "$TARGET" a3; timed restore "$t" "${CMD[@]}"
    RUNS[$t]+="$LAST_WALL $LAST_CPU $LAST_RSS"$'\n'
    if [ "$round" = 0 ]; then   # sanity, untimed: same number of files and bytes as the data
      got=$(tree_sum "$TARGET")
      [ "$got" = "$WANT" ] || { echo "WARNING: $t restored $got (files bytes), data has $WANT" >&2; BAD+="$t "; }
    fi
    target_down
  done
done
for t in "${TOOLS[@]}"; do
  # median by wall (lower median for an even count); its CPU and RSS go with it
  read -r w c m < <(printf '%s' "${RUNS[$t]}" | sort -n | sed -n "$(( (RESTORE_RUNS + 1) / 2 ))p")
  record "restore" "$t" "$w" "$c" "$m"
done

for t in "${TOOLS[@]}"; do
  log "check --read-data: $t"
  check_cmd "$t" "$R/$t"; measure "check --read-data" "$t" "${CMD[@]}"
done

# --- 15-version series ------------------------------------------------------------------------
SERIES_NAME="-"
if ! skip series; then
  DL=$WORK/series-dl   # kept between runs: downloads are cached
  mkdir -p "$DL"
  mapfile -t VERSIONS < <(printf '5.1\n'; seq 1 $((SERIES_VERSIONS - 1)) | sed 's/^/5.1./')
  ok=1
  for v in "${VERSIONS[@]}"; do
    ls "$DL"/[Dd]jango-"$v".tar.gz >/dev/null 2>&1 && continue
    log "downloading Django $v sdist"
    pip3 download -q --no-deps --no-binary :all: "django==$v" -d "$DL" >/dev/null 2>&1 || { ok=0; break; }
  done
  S=$R/series
  mkdir -p "$S"
  if [ "$ok" = 1 ]; then
    SERIES_NAME="Django ${VERSIONS[0]}..${VERSIONS[-1]} sdists"
    extract() { tar xzf "$(ls "$DL"/[Dd]jango-"${VERSIONS[$1]}".tar.gz)" -C "$S/src" --strip-components=1; }
  else
    # Fallback without PyPI: successive commits of this repository's own history.
    log "PyPI not reachable: series from this repository's last $SERIES_VERSIONS commits"
    mapfile -t VERSIONS < <(git rev-list --reverse -n "$SERIES_VERSIONS" HEAD)
    SERIES_NAME="last ${#VERSIONS[@]} commits of projectclone"
    extract() { git -C "$ROOT" archive "${VERSIONS[$1]}" | tar xf - -C "$S/src"; }
  fi
  for t in "${TOOLS[@]}"; do init_repo "$t" "$S/$t"; done
  declare -A SW SC SM
  REF_SERIES=0
  for ((i = 0; i < ${#VERSIONS[@]}; i++)); do
    rm -rf "$S/src" && mkdir -p "$S/src" && extract "$i"
    for t in "${TOOLS[@]}"; do
      log "series $((i + 1))/${#VERSIONS[@]}: $t"
      backup_cmd "$t" "$S/$t" "$S/src" "v$i"; timed series "$t" "${CMD[@]}"
      SW[$t]=$(awk -v a="${SW[$t]:-0}" -v b="$LAST_WALL" 'BEGIN{printf "%.2f", a+b}')
      SC[$t]=$(awk -v a="${SC[$t]:-0}" -v b="$LAST_CPU" 'BEGIN{printf "%.2f", a+b}')
      SM[$t]=$(( LAST_RSS > ${SM[$t]:-0} ? LAST_RSS : ${SM[$t]:-0} ))
    done
    REF_SERIES=$(( REF_SERIES + $(tar cf - -C "$S/src" . | zstd -q -3 -T2 | wc -c) ))
  done
  for t in "${TOOLS[@]}"; do
    record "${#VERSIONS[@]}-version series (sum)" "$t" "${SW[$t]}" "${SC[$t]}" "${SM[$t]}"
    SERIES[$t]=$(bytes "$S/$t")
  done
  rm -rf "$S/src"
fi

# --- 2 GB file, then 1 KiB inserted near its start ------------------------------------------
if ! skip big; then
  B=$R/big
  mkdir -p "$B/src"
  log "generating a $BIG_MIB MiB file"
  gen big "$B/src/disk.img" "$BIG_MIB" "$CORPUS"
  BIG_STEP="${BIG_MIB} MiB file"
  [ "$BIG_MIB" -lt 2048 ] || BIG_STEP="$((BIG_MIB / 1024)) GiB file"
  for t in "${TOOLS[@]}"; do
    init_repo "$t" "$B/$t"
    log "$BIG_STEP: $t"
    backup_cmd "$t" "$B/$t" "$B/src" b1; measure "$BIG_STEP: initial backup" "$t" "${CMD[@]}"
    GROWTH[$t]=$(bytes "$B/$t")
  done
  gen insert "$B/src/disk.img" 4096 1024
  for t in "${TOOLS[@]}"; do
    backup_cmd "$t" "$B/$t" "$B/src" b2; measure "$BIG_STEP: after 1 KiB insert" "$t" "${CMD[@]}"
    GROWTH[$t]=$(( $(bytes "$B/$t") - GROWTH[$t] ))
  done
  rm -rf "$B"
fi

# --- limit references ----------------------------------------------------------------------
REF_TAR=
if ! skip refs; then
  log "limit references"
  measure "limit: tar \\| zstd -3 -T2" "ref" sh -c 'tar cf - -C "$1" . | zstd -q -3 -T2 >"$2"' sh "$DATA" "$R/ref.tar.zst"
  REF_TAR=$(bytes "$R/ref.tar.zst"); rm -f "$R/ref.tar.zst"
  measure "limit: stat walk" "ref" find "$DATA" -printf "%s %T@\n"
  target_up
  measure "limit: cp -a" "ref" cp -a "$DATA" "$TARGET"
  target_down
fi

# --- report -----------------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0 && a != "") printf "%.2f", a / b; else printf "-" }'; }
mib() { awk -v a="$1" 'BEGIN{printf "%.1f", a / 1048576}'; }
# the projectclone row each limit reference is compared with
base_step() {
  case $1 in
    "limit: tar"*) echo "initial backup" ;;
    "limit: stat walk") echo "unchanged re-backup" ;;
    "limit: cp -a") echo "restore" ;;
    *) echo "$1" ;;
  esac
}
COMMIT=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || echo "+dirty")
OUT=benches/results/$(date +%F)-$(git rev-parse --short HEAD)$([ "$QUICK" = 1 ] && echo -quick || true).md
tool_version() {
  case $1 in
    projectclone) "$PC" --version ;;
    restic) restic version | cut -d' ' -f1-2 ;;
    borg) borg --version ;;
    rustic) "$RUSTIC" --version ;;
  esac 2>/dev/null | head -1
}
{
  echo "# compare.sh$([ "$QUICK" = 1 ] && echo " (QUICK)" || true) $(date -Iseconds), commit $COMMIT"
  echo
  echo "machine: $(nproc) cores, $(free -g | awk '/Mem/{print $2}') GiB, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uname -r)"
  echo
  echo "tools: $(for t in "${TOOLS[@]}"; do printf '%s; ' "$(tool_version "$t")"; done | sed 's/; $//')"
  echo
  echo "corpus: $CORPUS + small-files/ ($SMALL_FILES files): $(du -sh "$DATA" | cut -f1), $(find "$DATA" | wc -l) entries;" \
       "1% changed = $CHANGED files; series: $SERIES_NAME; big file: $(skip big && echo skipped || echo "$BIG_MIB MiB")"
  echo
  echo "Ratios are tool / projectclone (above 1: projectclone is faster or leaner). Limit rows compare"
  echo "with projectclone's initial backup (tar), unchanged re-backup (stat walk) and restore (cp -a)."
  echo "Restore: median wall of $RESTORE_RUNS interleaved runs, $([ "$RESTORE_FS" = fresh ] && echo "each into a freshly made ext4 (journal on) on a loop device" || echo "into a directory on the disk, removed before each run").${BAD:+ RESTORED TREE DIFFERS for: $BAD}"
  echo
  echo "| step | tool | wall s | CPU s | peak RSS MiB | wall ratio | CPU ratio | RSS ratio |"
  echo "|---|---|---|---|---|---|---|---|"
  for s in "${STEPS[@]}"; do
    b=$(base_step "$s")
    for t in "${TOOLS[@]}" ref; do
      [ -n "${WALL[$s|$t]:-}" ] || continue
      echo "| $s | $t | ${WALL[$s|$t]} | ${CPU[$s|$t]} | ${RSS[$s|$t]} |" \
           "$(ratio "${WALL[$s|$t]}" "${WALL[$b|projectclone]:-}") |" \
           "$(ratio "${CPU[$s|$t]}" "${CPU[$b|projectclone]:-}") |" \
           "$(ratio "${RSS[$s|$t]}" "${RSS[$b|projectclone]:-}") |"
    done
  done
  echo
  echo "Restore runs (wall s, in run order): $(for t in "${TOOLS[@]}"; do printf '%s: %s; ' "$t" "$(printf '%s' "${RUNS[$t]}" | cut -d' ' -f1 | tr '\n' ' ' | sed 's/ $//')"; done | sed 's/; $//')"
  echo
  echo "| size (ratio to projectclone) | $(printf '%s | ' "${TOOLS[@]}")reference |"
  echo "|---|$(printf -- '---|%.0s' "${TOOLS[@]}")---|"
  row() { # TITLE ARRAYNAME FORMATTER REFERENCE
    local -n a=$2; local line="| $1 |"
    for t in "${TOOLS[@]}"; do
      if [ -n "${a[$t]:-}" ]; then line+=" $($3 "${a[$t]}") ($(ratio "${a[$t]}" "${a[projectclone]:-}")) |"; else line+=" - |"; fi
    done
    echo "$line $4 |"
  }
  row "repository after initial backup, MiB" SIZE1 mib "tar \\| zstd -3: $([ -n "$REF_TAR" ] && mib "$REF_TAR" || echo -)"
  row "repository after 3 backups, MiB" SIZE3 mib ""
  skip series || row "$SERIES_NAME: repository, MiB" SERIES mib "each version tar \\| zstd -3, summed: $(mib "$REF_SERIES")"
  skip big || row "$BIG_STEP: growth after 1 KiB insert, bytes" GROWTH echo "1024 bytes inserted"
} | tee "$OUT"
log "written to $OUT"
[ "${KEEP:-0}" = 1 ] || rm -rf "$R"   # KEEP=1 leaves data copy and repositories in benches/work/run
