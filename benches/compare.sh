#!/usr/bin/env bash
# End-to-end comparison of projectclone with restic, borg and rustic on the same data.
#
#   benches/compare.sh [CORPUS_DIR]          full run (hours on 2 cores; needs ~25 GB free)
#   CORPUS=lowdup benches/compare.sh         the same rows on the low-duplication corpus
#   QUICK=1 benches/compare.sh [CORPUS_DIR]  tiny run for testing the harness (a few minutes)
#
# Environment: CORPUS=default|lowdup (which corpus is built; default: default), QUICK=1 (tiny
# sizes), RUNS=5 (runs of every timed row; QUICK: 2; RESTORE_RUNS is the old name), TOOLS=
# "projectclone restic borg rustic" (subset/order), SKIP="series big refs" (leave out parts),
# RESTORE_FS="fresh used" (where restores go, a list: fresh, used, disk; see below),
# RUSTIC=/path/to/rustic, PC=/path/to/projectclone (copied into the run first: a rebuild of a
# shared target/ during the run cannot mix builds), SERIES_VERSIONS=15, BIG_MIB=2048,
# BIG_KIND=mixed|vm (default: vm for lowdup, mixed otherwise), EDITS=1000, SMALL_FILES=100000
# (lowdup: 0), KEEP=1 (keep benches/work/run: the data copy and the repositories).
#
# The default corpus. Without CORPUS_DIR one is built once under benches/work/corpus-src from
# data present on a fresh machine of this kind: the Rust toolchain's sysroot `lib/`, the cargo
# registry sources committed into a git repository (a checkout with `.git`, packed by `git
# gc`), a virtualenv with numpy and pandas binary wheels from PyPI, and this project's release
# `target/deps`. (QUICK: a clone of this repository with its `.git` plus a 15 MB slice of the
# sysroot.) Every run copies that corpus (or the caller's CORPUS_DIR, never modified) to
# benches/work/run/data and adds `small-files/`: a deterministic tree of SMALL_FILES files of
# 100 B..8 KiB cut from real sources in the cargo registry, 100 files per directory. The "1%
# changed" step edits that copy: every 100th regular file in sorted path order gets 32 bytes
# inserted at its middle.
#
# The low-duplication corpus (CORPUS=lowdup; issue 19): a ~1.5 GB developer tree of roughly
# 30-35k files with little internal duplication, built once under benches/work/corpus-lowdup
# from this machine and package registries only (PyPI, npm; no other network):
#   projectclone-git/  a clone (`git clone --no-local`) of this repository with its .git pack
#   crates-git/        ~150 MiB of crate sources from ~/.cargo/registry/src, one version per
#                      crate (no near-copies), committed in 4 commits, then `git gc`: a checkout
#                      beside its zlib-compressed pack
#   venv/              a virtualenv with binary wheels of numpy, pandas, scipy, pyarrow (pip)
#   node/node_modules/ `npm install` of typescript, webpack(-cli), eslint, @babel/core, react,
#                      react-dom, lodash, rxjs, esbuild, prettier (fails clearly without npm's
#                      registry)
#   target/release/deps/  ~600 MiB of this project's release .rlib/.rmeta/.so/.d files (no
#                      test executables, which are near-copies of each other)
# What was installed (versions, counts) is written to its .contents and into the report header
# with each part's size and file count. No small-files/ is added (SMALL_FILES=0). QUICK: the
# same parts in miniature (4 MiB of crates, markupsafe, `ms`, 8 MiB of deps), ~50 MB.
#
# Rows of the timing table (encryption on, default compression of each tool, page cache
# dropped before every timed command; each tool has its own repository and cache). Every row
# is RUNS runs, interleaved: round after round, each tool once per round, the tool order
# rotated every round; the report gives the median run by wall (its CPU and RSS go with it)
# and the min-max of wall and CPU over the runs.
#   initial backup       first backup of the corpus into an empty repository (every run
#                        into a new one; the last run's repository goes on)
#   unchanged re-backup  a further backup, nothing changed (each run one more)
#   1% changed backup    a backup after the 1% edit above; each run edits another 1% (the
#                        files whose sorted index is 37+run modulo 100) just before its round
#   restore (MODE)       restore of the latest snapshot into an empty directory, once per
#                        RESTORE_FS mode; the first round checks file count and bytes
#   check --read-data    full verification reading every pack (borg: check --verify-data)
#   15-version series    SERIES_VERSIONS successive Django releases (sdists from PyPI, ~70 MB,
#                        ~6,800 files each), each extracted over the same directory and backed
#                        up into one fresh repository per tool: one run is the whole series
#                        (sum of wall and CPU, max RSS), in fresh repositories every run
#   2 GB file / 2 GiB image: initial / after 1 KiB insert / after 1000 × 4 KiB edits
#                        a deterministic BIG_MIB file backed up into a fresh repository (every
#                        run a new one). BIG_KIND=mixed (the default corpus): real corpus bytes,
#                        random and zero runs. BIG_KIND=vm (lowdup): a VM-like image in 4 KiB-
#                        aligned runs: real corpus bytes ~50%, random ~20%, zeros ~15%, copies
#                        of earlier runs of the image ~15%. Then, every run: 1 KiB of new random
#                        bytes inserted at offset 4096 (the file is rewritten) and a backup; then
#                        EDITS in-place writes of 4 KiB random bytes at 4 KiB-aligned
#                        deterministic offsets (4 MB; another set every run) and a backup
#   limit: ...           references, not backup tools: `tar | zstd -3 -T2` of the corpus (vs
#                        initial backup), a bare stat walk `find -printf` (vs unchanged
#                        re-backup), `cp -a` of the corpus into the same place as the restores,
#                        once per RESTORE_FS mode (vs that restore row)
# RESTORE_FS, a list run in order (default "fresh used", each gets its own restore and cp -a
# rows):
#   fresh  each restore, and each `cp -a`, writes into a file system of its own, made for it
#          just before: ext4 as `mkfs.ext4` makes it (with a journal) in a sparse image on a
#          loop device, unmounted and removed afterwards (needs root; without a loop device it
#          falls back to `disk` and says so in the report).
#   used   an aged file system, made once per run and shared by all its restores: ext4 (journal
#          on) in a sparse image on a loop device, 2.5x the data's blocks, filled with two
#          copies of the data (`cp -a`), then every 2nd file of the first copy and every 3rd of
#          the second deleted, so the inode and block bitmaps have holes and about half the
#          space is used (the report gives the fill). Each restore goes into a new directory
#          there, removed (and synced) after its run. This is the "working disk" of issue 19
#          without the scan below (journal on), and the same state for every tool.
#   disk   into benches/work/run/restore on the disk itself, removed before each run (the method
#          of the results before 2026-11-26-18ee8cb). This VM's disk is ext4 *without* a
#          journal, and that ext4 skips, on every create, free inodes deleted in the last 60 s
#          (360 s while their inode-table block is dirty, which a create next to them makes
#          it), checking them one by one (`recently_deleted`, only without a journal;
#          RECENTCY_MIN 60 and RECENTCY_DIRTY 300 since Linux 5.7). Removing 130,000 restored
#          entries seconds before the next restore made every tool pay for that scan, by an
#          amount that changed from run to run (projectclone's restore CPU 5.2-8.0 s, rustic's
#          10.2-13.6 s in runs of the same code); a fresh or used file system of our own
#          measures the tools instead.
# Ratios are tool / projectclone: above 1 means projectclone is faster, leaner or smaller.
# The size table gives repository bytes after the initial backup and after all the backups of
# the main corpus, the series total, and the growth of each tool's repository from the 1 KiB
# insertion, from the edits, and from both (median over the runs, ratio of medians, min-max).
# Output: one markdown report, printed and written to
# benches/results/<date>-<commit>[-quick][-lowdup].md. Timings belong here, never in tests.
set -euo pipefail

# ---------------------------------------------------------------------------------------------
# Data generators (deterministic). Also used by benches/scale.sh: `compare.sh --gen small DEST N`.
GEN_PY=$(cat <<'PYEOF'
import math, os, random, re, shutil, subprocess, sys

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
    """Insert 32 bytes in the middle of every `every`-th regular file (sorted order), those
    whose index is `phase` modulo `every` (each run of the changed backup uses another phase)."""
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

def vm(dest, mib, pool_root, seed=4):
    """A deterministic VM-like image of `mib` MiB in 4 KiB-aligned runs of 64 KiB..4 MiB: real
    bytes (the files under pool_root in sorted order, cycling; ~50%), random bytes (~20%),
    zeros (~15%) and copies of an earlier run of the image itself (~15%: the same blocks
    twice, like a file present twice in the guest or a copied disk region)."""
    pool = walk_files(pool_root)
    rng = random.Random(seed)
    total, pos, pi, src = mib << 20, 0, 0, None
    with open(dest, 'w+b') as out:
        while pos < total:
            kind = rng.random()
            n = min(total - pos, rng.randrange(16, 1025) * 4096)
            if kind < 0.15 and pos >= n:
                out.seek(rng.randrange((pos - n) // 4096 + 1) * 4096)
                b = out.read(n)
                out.seek(pos); out.write(b)
            elif kind < 0.65:
                out.seek(pos)
                got = 0
                while got < n:
                    if src is None:
                        src = open(pool[pi % len(pool)], 'rb'); pi += 1
                    b = src.read(min(n - got, 1 << 20))
                    if not b:
                        src.close(); src = None; continue
                    out.write(b); got += len(b)
            elif kind < 0.85:
                out.seek(pos); out.write(rng.randbytes(n))
            else:
                out.seek(pos); out.write(bytes(n))
            pos += n

def edit(path, count, size, seed):
    """`count` in-place writes of `size` random bytes at deterministic offsets, multiples of
    `size` (block writes of a guest): the file keeps its length, its mtime changes."""
    rng = random.Random(seed)
    blocks = os.path.getsize(path) // size
    with open(path, 'r+b') as f:
        for _ in range(count):
            f.seek(rng.randrange(blocks) * size)
            f.write(rng.randbytes(size))

def age(root):
    """Delete every 2nd regular file (sorted order) under root/old-a and every 3rd under
    root/old-b: the used file system keeps holes in its inode and block bitmaps."""
    for sub, every in (('old-a', 2), ('old-b', 3)):
        for i, p in enumerate(walk_files(os.path.join(root, sub))):
            if i % every == 0:
                os.remove(p)

def crates(src, dest, mib, commits):
    """A git repository of crate sources from the cargo registry src (one version per crate
    name, crates in name order while they fit in `mib` MiB), committed in `commits` commits
    (each adds a share of the crates), then `git gc`: a checkout with its pack."""
    latest = {}
    for d in sorted(os.listdir(src)):
        m = re.match(r'(.+?)-\d+\.\d+', d)
        latest[m.group(1) if m else d] = d
    left, chosen = mib << 20, []
    for name in sorted(latest):
        p = os.path.join(src, latest[name])
        size = sum(os.path.getsize(f) for f in walk_files(p))
        if size <= min(left, 32 << 20):
            chosen.append(latest[name]); left -= size
    git = ['git', '-C', dest, '-c', 'user.email=bench@localhost', '-c', 'user.name=bench', '-c', 'gc.auto=0']
    os.makedirs(dest)
    subprocess.run(git + ['init', '-q'], check=True)
    for k in range(commits):
        for d in chosen[k::commits]:
            shutil.copytree(os.path.join(src, d), os.path.join(dest, d), symlinks=True)
        subprocess.run(git + ['add', '-A'], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(git + ['commit', '-qm', f'crates, part {k + 1} of {commits}'], check=True)
    subprocess.run(git + ['gc', '-q'], check=True)
    print(len(chosen))

def insert(path, offset, nbytes, seed=3):
    """Rewrite path with nbytes deterministic random bytes inserted at offset."""
    tmp = path + '.tmp'
    with open(path, 'rb') as src, open(tmp, 'wb') as dst:
        dst.write(src.read(offset))
        dst.write(random.Random(seed).randbytes(nbytes))
        shutil.copyfileobj(src, dst, 8 << 20)
    shutil.copystat(path, tmp)
    os.replace(tmp, path)

def slice_copy(src_root, dest, mib, max_mib=4):
    """Copy files of src_root (sorted order) of at most `max_mib` MiB each that fit in `mib`
    MiB, keeping the layout."""
    left = mib << 20
    for p in walk_files(src_root):
        if os.path.getsize(p) > min(left, max_mib << 20):
            continue
        q = os.path.join(dest, os.path.relpath(p, src_root))
        os.makedirs(os.path.dirname(q), exist_ok=True)
        shutil.copy2(p, q)
        left -= os.path.getsize(p)

cmd, args = sys.argv[1], sys.argv[2:]
if cmd == 'small':  small(args[0], int(args[1]), args[2])
elif cmd == 'change': change(args[0], 100, int(args[1]) if len(args) > 1 else 37)
elif cmd == 'big':  big(args[0], int(args[1]), args[2])
elif cmd == 'vm':   vm(args[0], int(args[1]), args[2])
elif cmd == 'insert': insert(args[0], int(args[1]), int(args[2]), *map(int, args[3:4]))
elif cmd == 'edit': edit(args[0], int(args[1]), int(args[2]), int(args[3]))
elif cmd == 'age':  age(args[0])
elif cmd == 'crates': crates(args[0], args[1], int(args[2]), int(args[3]))
elif cmd == 'slice': slice_copy(args[0], args[1], int(args[2]), *map(int, args[3:4]))
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
KIND=${CORPUS:-default}   # CORPUS names the corpus kind; CORPUS_DIR below is its directory
case $KIND in default | lowdup) ;; *) echo "CORPUS must be default or lowdup, not '$KIND'" >&2; exit 2 ;; esac
if [ "$QUICK" = 1 ]; then
  SMALL_FILES=${SMALL_FILES:-$([ "$KIND" = lowdup ] && echo 0 || echo 2000)}
  BIG_MIB=${BIG_MIB:-20} SERIES_VERSIONS=${SERIES_VERSIONS:-3} RUNS=${RUNS:-${RESTORE_RUNS:-2}}
else
  SMALL_FILES=${SMALL_FILES:-$([ "$KIND" = lowdup ] && echo 0 || echo 100000)}
  BIG_MIB=${BIG_MIB:-2048} SERIES_VERSIONS=${SERIES_VERSIONS:-15} RUNS=${RUNS:-${RESTORE_RUNS:-5}}
fi
BIG_KIND=${BIG_KIND:-$([ "$KIND" = lowdup ] && echo vm || echo mixed)}
case $BIG_KIND in vm | mixed) ;; *) echo "BIG_KIND must be vm or mixed, not '$BIG_KIND'" >&2; exit 2 ;; esac
EDITS=${EDITS:-1000}
TOOLS=(${TOOLS:-projectclone restic borg rustic})
SKIP=${SKIP:-}
RESTORE_FS=${RESTORE_FS:-fresh used}
for m in $RESTORE_FS; do
  case $m in fresh | used | disk) ;; *) echo "RESTORE_FS takes fresh, used, disk (a list), not '$m'" >&2; exit 2 ;; esac
done
skip() { [[ " $SKIP " == *" $1 "* ]]; }
log() { echo "== $*" >&2; }

# --- peers and references, installed if missing ----------------------------------------------
need() { command -v "$1" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$2" >/dev/null; }; }
need /usr/bin/time time
need zstd zstd
need python3 python3
[ "$RESTORE_FS" = disk ] || need mkfs.ext4 e2fsprogs
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
# The low-duplication corpus: see the header. Built once into $1; its .contents says what it
# holds (copied into the report).
PIP_PKGS="numpy pandas scipy pyarrow" NPM_PKGS="typescript webpack webpack-cli eslint @babel/core react react-dom lodash rxjs esbuild prettier"
CRATES_MIB=150 TARGET_MIB=600
[ "$QUICK" = 1 ] && PIP_PKGS="markupsafe" NPM_PKGS="ms" CRATES_MIB=4 TARGET_MIB=8
build_lowdup() {
  local c=$1 reg n
  reg=$(ls -d ~/.cargo/registry/src/*/ 2>/dev/null | head -1)
  [ -n "$reg" ] || { echo "no crate sources in ~/.cargo/registry/src (run a cargo build first)" >&2; exit 1; }
  git clone -q --no-local "$ROOT" "$c/projectclone-git"
  n=$(gen crates "$reg" "$c/crates-git" "$CRATES_MIB" 4)
  python3 -m venv "$c/venv"
  "$c/venv/bin/pip" install -q --only-binary :all: $PIP_PKGS ||
    { echo "pip install $PIP_PKGS into $c/venv failed: CORPUS=lowdup needs PyPI" >&2; exit 1; }
  mkdir -p "$c/node" && (cd "$c/node" && npm init -y >/dev/null &&
    npm install --no-audit --no-fund --loglevel=error $NPM_PKGS >/dev/null) ||
    { echo "npm install $NPM_PKGS in $c/node failed: CORPUS=lowdup needs the npm registry ($(npm config get registry))" >&2; exit 1; }
  # a cargo target/: this project's release deps (libraries, not the test executables)
  mkdir -p "$c/target/release/deps"
  local deps=$ROOT/target/release/deps
  [ -d "$deps" ] || deps=${PC%/*}/deps   # a worktree without target/: the binary's own
  find "$deps" -maxdepth 1 -type f \( -name '*.rlib' -o -name '*.rmeta' -o -name '*.so' -o -name '*.d' \) >"$c/.targetlist"
  python3 - "$c/.targetlist" "$c/target/release/deps" "$TARGET_MIB" <<'PY'
import os, shutil, sys
left = int(sys.argv[3]) << 20
for p in sorted(open(sys.argv[1]).read().split()):
    s = os.path.getsize(p)
    if s <= min(left, 64 << 20):
        shutil.copy2(p, sys.argv[2]); left -= s
PY
  rm -f "$c/.targetlist"
  {
    echo "projectclone-git/ (a clone of this repository with its .git);"
    echo "crates-git/ ($n crates from the cargo registry, one version each, ≤ $CRATES_MIB MiB, committed in 4 commits and packed);"
    echo "venv/ (python $(python3 -V | cut -d' ' -f2) venv, pip binary wheels: $("$c/venv/bin/pip" freeze | tr '\n' ' ' | sed 's/ $//'));"
    echo "node/node_modules/ (npm install $NPM_PKGS: $(ls "$c/node/node_modules" | grep -vc '^\.') top-level packages);"
    echo "target/release/deps/ (this project's release .rlib/.rmeta/.so/.d files, ≤ $TARGET_MIB MiB)"
  } | tr '\n' ' ' >"$c/.contents"
}
if [ -n "${1:-}" ]; then
  CORPUS_DIR=$(cd "$1" && pwd)
else
  CORPUS_DIR=$WORK/corpus-$([ "$KIND" = lowdup ] && echo lowdup || echo src)$([ "$QUICK" = 1 ] && echo -quick || true)
  if [ ! -e "$CORPUS_DIR/.complete" ]; then
    log "building corpus $CORPUS_DIR"
    rm -rf "$CORPUS_DIR" && mkdir -p "$CORPUS_DIR"
    if [ "$KIND" = lowdup ]; then
      build_lowdup "$CORPUS_DIR"
    else
      sysroot=$(rustc --print sysroot)
      git clone -q --no-local "$ROOT" "$CORPUS_DIR/projectclone-git"
      if [ "$QUICK" = 1 ]; then
        gen slice "$sysroot/lib" "$CORPUS_DIR/sysroot-lib" 15
      else
        cp -a "$sysroot/lib" "$CORPUS_DIR/sysroot-lib"
        cp -a "$(pool_dir)" "$CORPUS_DIR/vendor"
        # gc.auto=0 and a gc in the foreground: `commit` would otherwise start a detached
        # auto-gc that packs and deletes loose objects while the corpus is being copied
        (cd "$CORPUS_DIR/vendor" && git init -q && git add -A >/dev/null &&
          git -c user.email=b@b -c user.name=b -c gc.auto=0 commit -qm corpus && git gc -q)
        python3 -m venv "$CORPUS_DIR/venv" && "$CORPUS_DIR/venv/bin/pip" install -q numpy pandas
        mkdir -p "$CORPUS_DIR/target/release" && cp -a "$ROOT/target/release/deps" "$CORPUS_DIR/target/release/"
      fi
    fi
    touch "$CORPUS_DIR/.complete"
  fi
fi
CONTENTS=$(cat "$CORPUS_DIR/.contents" 2>/dev/null || true)

export PROJECTCLONE_PASSWORD=bench RESTIC_PASSWORD=bench BORG_PASSPHRASE=bench RUSTIC_PASSWORD=bench
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
R=$WORK/run
rm -rf "$R" && mkdir -p "$R"
export BORG_BASE_DIR=$R/borg-home   # borg's cache and security dirs stay inside the run
# a copy of the binary: a rebuild of $PC during the run (a shared target/) cannot mix builds
cp "$PC" "$R/projectclone-bin" && PC=$R/projectclone-bin

DATA=$R/data
log "copying corpus to $DATA and adding $SMALL_FILES small files"
cp -a "$CORPUS_DIR/." "$DATA/"
rm -f "$DATA/.complete" "$DATA/.contents"
if [ "$SMALL_FILES" -gt 0 ]; then
  [ ! -e "$DATA/small-files" ] || { echo "corpus already has small-files/" >&2; exit 1; }
  gen small "$DATA/small-files" "$SMALL_FILES" "$(pool_dir)"
fi
# what the data holds, per top-level directory, for the report
PARTS=$(for d in "$DATA"/*; do
  printf '%s %s, %s files; ' "${d##*/}" "$(du -sh "$d" | cut -f1)" "$(find "$d" -type f | wc -l)"; done | sed 's/; $//')

# --- measurement ------------------------------------------------------------------------------
# Every timed command is one run of a row; RUNS[row|tool] holds "wall cpu rss" lines.
declare -A RUNS SEEN
STEPS=()
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }
# timed STEP TOOL CMD... : runs CMD with a cold page cache; sets wall, user+sys, peak RSS.
timed() {
  local step=$1 tool=$2; shift 2
  drop_caches
  if ! /usr/bin/time -f "%e %U %S %M" -o "$R/time" "$@" >"$R/out" 2>"$R/err"; then
    echo "FAILED: $step / $tool: $*" >&2; cat "$R/err" >&2; return 1
  fi
  read -r wall user sys rss <"$R/time"
  LAST_WALL=$wall LAST_CPU=$(awk -v u="$user" -v s="$sys" 'BEGIN{printf "%.2f", u+s}') LAST_RSS=$((rss / 1024))
}
add_run() { # STEP TOOL WALL CPU RSS
  [ -n "${SEEN[$1]:-}" ] || { SEEN[$1]=1; STEPS+=("$1"); }
  RUNS[$1|$2]+="$3 $4 $5"$'\n'
}
measure() { timed "$@"; add_run "$1" "$2" "$LAST_WALL" "$LAST_CPU" "$LAST_RSS"; }
# stats STEP TOOL: MED_W MED_C MED_R (the median run by wall, lower median for an even count;
# its CPU and RSS go with it), MIN_W MAX_W, MIN_C MAX_C over the runs; N runs.
stats() {
  local runs=${RUNS[$1|$2]:-}
  MED_W= MED_C= MED_R= MIN_W= MAX_W= MIN_C= MAX_C= N=0
  [ -n "$runs" ] || return 0
  N=$(printf '%s' "$runs" | wc -l)
  read -r MED_W MED_C MED_R < <(printf '%s' "$runs" | sort -n -k1,1 | sed -n "$(( (N + 1) / 2 ))p")
  read -r MIN_W MAX_W MIN_C MAX_C < <(printf '%s' "$runs" | awk 'NR==1{a=b=$1; c=d=$2}
    {if ($1<a) a=$1; if ($1>b) b=$1; if ($2<c) c=$2; if ($2>d) d=$2} END{print a, b, c, d}')
}
# order ROUND: ORDER = TOOLS rotated by ROUND (interleaved runs, no tool always first)
order() { local n=${#TOOLS[@]} k; ORDER=(); for ((k = 0; k < n; k++)); do ORDER+=("${TOOLS[(k + $1) % n]}"); done; }
bytes() { du -sb "$1" | cut -f1; }
# median and spread of a list of numbers: "median min-max"
median_spread() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{v[NR]=$1} END{printf "%s %s-%s", v[int((NR+1)/2)], v[1], v[NR]}'; }

# Per-tool commands. Repository REPO; cache in REPO.cache; LABEL names borg archives.
init_repo() { # TOOL REPO (removes what was there)
  rm -rf "$2" "$2.cache"
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
declare -A SIZE1 SIZE3 SERIES GROW_I GROW_E GROW_IE INS_GROW PREV

# --- main corpus: backups, restore, check ------------------------------------------------------
for ((r = 0; r < RUNS; r++)); do
  order "$r"
  for t in "${ORDER[@]}"; do
    log "initial backup $((r + 1))/$RUNS: $t"
    init_repo "$t" "$R/$t"
    backup_cmd "$t" "$R/$t" "$DATA" a1; measure "initial backup" "$t" "${CMD[@]}"
  done
done
for t in "${TOOLS[@]}"; do SIZE1[$t]=$(bytes "$R/$t"); done
for ((r = 0; r < RUNS; r++)); do
  order "$r"
  for t in "${ORDER[@]}"; do
    log "unchanged re-backup $((r + 1))/$RUNS: $t"
    backup_cmd "$t" "$R/$t" "$DATA" "a2-$r"; measure "unchanged re-backup" "$t" "${CMD[@]}"
  done
done
for ((r = 0; r < RUNS; r++)); do
  n=$(gen change "$DATA" $(( (37 + r) % 100 )))
  [ "$r" -gt 0 ] || CHANGED=$n
  order "$r"
  for t in "${ORDER[@]}"; do
    log "1% changed backup $((r + 1))/$RUNS: $t"
    LAST_LABEL=a3-$r
    backup_cmd "$t" "$R/$t" "$DATA" "$LAST_LABEL"; measure "1% changed backup" "$t" "${CMD[@]}"
  done
done
for t in "${TOOLS[@]}"; do SIZE3[$t]=$(bytes "$R/$t"); done

# Where restores (and `cp -a`) write: `target_up MODE` makes an empty place and sets TARGET (not
# yet existing: each tool creates it), `target_down MODE` removes it. See RESTORE_FS above.
MNT=$R/restore-fs IMG=$R/restore.img UMNT=$R/used-fs UIMG=$R/used.img
DATA_BYTES=$(bytes "$DATA") DATA_ENTRIES=$(find "$DATA" | wc -l)
FS_BYTES=$(( DATA_BYTES * 2 + (1 << 30) )) FS_INODES=$(( DATA_ENTRIES * 2 + 10000 ))
declare -A FS_LABEL=([fresh]="fresh ext4" [used]="used ext4" [disk]="disk")
mkfs_mount() { # IMAGE BYTES INODES MOUNTPOINT
  rm -f "$1" && truncate -s "$2" "$1" && mkfs.ext4 -q -F -N "$3" "$1" && mkdir -p "$4" && mount -o loop "$1" "$4"
}
used_up() { # the used file system, made once: two copies of the data, then files deleted
  log "making the used file system: two copies of the data, every 2nd / 3rd file deleted"
  # sized so the aged copies (~1.17x the data's blocks) fill about half of it before the restore
  mkfs_mount "$UIMG" $(( $(du -s -B1 "$DATA" | cut -f1) * 5 / 2 + (64 << 20) )) $(( DATA_ENTRIES * 4 + 10000 )) "$UMNT" ||
    { echo "RESTORE_FS=used: cannot mount a file system image (root and a loop device needed)" >&2; exit 1; }
  cp -a "$DATA" "$UMNT/old-a" && cp -a "$DATA" "$UMNT/old-b" && gen age "$UMNT" && sync
  USED_DF=$(df -h --output=used,size "$UMNT" | tail -1 | awk '{print $1 " of " $2}')
  USED_FILL=$(df --output=pcent "$UMNT" | tail -1 | tr -d ' ')
}
used_down() { umount "$UMNT" && rm -f "$UIMG"; }
target_up() {
  case $1 in
    fresh)
      if [ -z "${MODE_FALLBACK:-}" ]; then
        mkfs_mount "$IMG" "$FS_BYTES" "$FS_INODES" "$MNT" && TARGET=$MNT/out && return 0
        log "cannot mount a fresh file system (root and a loop device needed): restores go to the disk"
        rm -f "$IMG"; FS_LABEL[fresh]="disk (no loop device)"; MODE_FALLBACK=1
      fi ;;
    used) USED_N=$(( ${USED_N:-0} + 1 )) && TARGET=$UMNT/restore-$USED_N && return 0 ;;
  esac
  # Sync and a pause take the first edge off the scan of recently deleted inodes.
  rm -rf "$R/restore" && sync && sleep 6 && TARGET=$R/restore
}
target_down() {
  case $1 in
    fresh) if [ -z "${MODE_FALLBACK:-}" ]; then umount "$MNT" && rm -f "$IMG"; else rm -rf "$R/restore"; fi ;;
    used) rm -rf "$TARGET" && sync ;;
    disk) rm -rf "$R/restore" ;;
  esac
}
trap 'for m in "$MNT" "$UMNT"; do mountpoint -q "$m" 2>/dev/null && umount "$m"; done; rm -f "$IMG" "$UIMG"' EXIT

tree_sum() { find "$1" -type f -printf '%s\n' | awk '{n++; s+=$1} END{print n, s}'; }
WANT=$(tree_sum "$DATA") BAD=
for mode in $RESTORE_FS; do
  [ "$mode" != used ] || used_up
  for ((r = 0; r < RUNS; r++)); do
    order "$r"
    for t in "${ORDER[@]}"; do
      log "restore ($mode) $((r + 1))/$RUNS: $t"
      target_up "$mode"
      restore_cmd "$t" "$R/$t" "$TARGET" "$LAST_LABEL"; measure "restore (${FS_LABEL[$mode]})" "$t" "${CMD[@]}"
      if [ "$r" = 0 ]; then   # sanity, untimed: same number of files and bytes as the data
        got=$(tree_sum "$TARGET")
        [ "$got" = "$WANT" ] || { echo "WARNING: $t restored $got (files bytes), data has $WANT" >&2; BAD+="$t ($mode) "; }
      fi
      target_down "$mode"
    done
    if ! skip refs; then
      log "limit: cp -a ($mode) $((r + 1))/$RUNS"
      target_up "$mode"
      measure "limit: cp -a (${FS_LABEL[$mode]})" "ref" cp -a "$DATA" "$TARGET"
      target_down "$mode"
    fi
  done
  [ "$mode" != used ] || used_down
done

for ((r = 0; r < RUNS; r++)); do
  order "$r"
  for t in "${ORDER[@]}"; do
    log "check --read-data $((r + 1))/$RUNS: $t"
    check_cmd "$t" "$R/$t"; measure "check --read-data" "$t" "${CMD[@]}"
  done
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
  SERIES_STEP="${#VERSIONS[@]}-version series (sum)"
  REF_SERIES=0
  for ((r = 0; r < RUNS; r++)); do   # each run: the whole series into fresh repositories
    declare -A SW=() SC=() SM=()
    for t in "${TOOLS[@]}"; do init_repo "$t" "$S/$t"; done
    order "$r"
    for ((i = 0; i < ${#VERSIONS[@]}; i++)); do
      rm -rf "$S/src" && mkdir -p "$S/src" && extract "$i"
      for t in "${ORDER[@]}"; do
        log "series run $((r + 1))/$RUNS, version $((i + 1))/${#VERSIONS[@]}: $t"
        backup_cmd "$t" "$S/$t" "$S/src" "v$i"; timed series "$t" "${CMD[@]}"
        SW[$t]=$(awk -v a="${SW[$t]:-0}" -v b="$LAST_WALL" 'BEGIN{printf "%.2f", a+b}')
        SC[$t]=$(awk -v a="${SC[$t]:-0}" -v b="$LAST_CPU" 'BEGIN{printf "%.2f", a+b}')
        SM[$t]=$(( LAST_RSS > ${SM[$t]:-0} ? LAST_RSS : ${SM[$t]:-0} ))
      done
      [ "$r" -gt 0 ] || REF_SERIES=$(( REF_SERIES + $(tar cf - -C "$S/src" . | zstd -q -3 -T2 | wc -c) ))
    done
    for t in "${TOOLS[@]}"; do add_run "$SERIES_STEP" "$t" "${SW[$t]}" "${SC[$t]}" "${SM[$t]}"; done
  done
  for t in "${TOOLS[@]}"; do SERIES[$t]=$(bytes "$S/$t"); done
  rm -rf "$S"
fi

# --- 2 GiB image: initial backup, then 1 KiB inserted near its start, then block edits ---------
if ! skip big; then
  B=$R/big
  mkdir -p "$B/src"
  log "generating a $BIG_MIB MiB $BIG_KIND image"
  gen "$([ "$BIG_KIND" = vm ] && echo vm || echo big)" "$B/src/disk.img" "$BIG_MIB" "$CORPUS_DIR"
  BIG_STEP="${BIG_MIB} MiB $([ "$BIG_KIND" = vm ] && echo image || echo file)"
  [ "$BIG_MIB" -lt 2048 ] || BIG_STEP="$((BIG_MIB / 1024)) GiB $([ "$BIG_KIND" = vm ] && echo image || echo file)"
  for ((r = 0; r < RUNS; r++)); do
    order "$r"
    for t in "${ORDER[@]}"; do
      log "$BIG_STEP, initial backup $((r + 1))/$RUNS: $t"
      init_repo "$t" "$B/$t"
      backup_cmd "$t" "$B/$t" "$B/src" b1; measure "$BIG_STEP: initial backup" "$t" "${CMD[@]}"
    done
  done
  for t in "${TOOLS[@]}"; do PREV[$t]=$(bytes "$B/$t"); done
  for ((r = 0; r < RUNS; r++)); do  # each run: one more 1 KiB insert at 4096, then EDITS more edits
    order "$r"
    gen insert "$B/src/disk.img" 4096 1024 $((3 + r))
    for t in "${ORDER[@]}"; do
      log "$BIG_STEP, after 1 KiB insert $((r + 1))/$RUNS: $t"
      backup_cmd "$t" "$B/$t" "$B/src" "b2-$r"; measure "$BIG_STEP: after 1 KiB insert" "$t" "${CMD[@]}"
      now=$(bytes "$B/$t"); GROW_I[$t]+="$((now - PREV[$t])) "; gi=$((now - PREV[$t])); PREV[$t]=$now
      INS_GROW[$t]=$gi
    done
    gen edit "$B/src/disk.img" "$EDITS" 4096 $((1000 + r))
    for t in "${ORDER[@]}"; do
      log "$BIG_STEP, after $EDITS edits $((r + 1))/$RUNS: $t"
      backup_cmd "$t" "$B/$t" "$B/src" "b3-$r"; measure "$BIG_STEP: after $EDITS × 4 KiB edits" "$t" "${CMD[@]}"
      now=$(bytes "$B/$t"); GROW_E[$t]+="$((now - PREV[$t])) "
      GROW_IE[$t]+="$((now - PREV[$t] + INS_GROW[$t])) "; PREV[$t]=$now
    done
  done
  rm -rf "$B"
fi

# --- limit references ----------------------------------------------------------------------
REF_TAR=
if ! skip refs; then
  for ((r = 0; r < RUNS; r++)); do
    log "limit references $((r + 1))/$RUNS"
    measure "limit: tar \\| zstd -3 -T2" "ref" sh -c 'tar cf - -C "$1" . | zstd -q -3 -T2 >"$2"' sh "$DATA" "$R/ref.tar.zst"
    REF_TAR=$(bytes "$R/ref.tar.zst"); rm -f "$R/ref.tar.zst"
    measure "limit: stat walk" "ref" find "$DATA" -printf "%s %T@\n"
  done
fi

# --- report -----------------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0 && a != "") printf "%.2f", a / b; else printf "-" }'; }
mib() { awk -v a="$1" 'BEGIN{printf "%.1f", a / 1048576}'; }
# the projectclone row each limit reference is compared with
base_step() {
  case $1 in
    "limit: tar"*) echo "initial backup" ;;
    "limit: stat walk") echo "unchanged re-backup" ;;
    "limit: cp -a ("*) echo "restore (${1#limit: cp -a (}" ;;
    *) echo "$1" ;;
  esac
}
COMMIT=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || echo "+dirty")
OUT=benches/results/$(date +%F)-$(git rev-parse --short HEAD)$([ "$QUICK" = 1 ] && echo -quick || true)$([ "$KIND" = lowdup ] && echo -lowdup || true).md
tool_version() {
  case $1 in
    projectclone) "$PC" --version ;;
    restic) restic version | cut -d' ' -f1-2 ;;
    borg) borg --version ;;
    rustic) "$RUSTIC" --version ;;
  esac 2>/dev/null | head -1
}
{
  echo "# compare.sh$([ "$QUICK" = 1 ] && echo " (QUICK)" || true) CORPUS=$KIND $(date -Iseconds), commit $COMMIT"
  echo
  echo "machine: $(nproc) cores, $(free -g | awk '/Mem/{print $2}') GiB, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uname -r)"
  echo
  if [ -r /sys/module/page_reporting/parameters/page_reporting_order ]; then
    echo "free page reporting: on (order $(cat /sys/module/page_reporting/parameters/page_reporting_order)): memory freed by dropping the page cache goes back to the host, and a page taken from free memory again faults in the host (system time that varies from run to run)"
    echo
  fi
  echo "tools: $(for t in "${TOOLS[@]}"; do printf '%s; ' "$(tool_version "$t")"; done | sed 's/; $//')"
  echo
  echo "corpus ($KIND): $CORPUS_DIR$([ "$SMALL_FILES" -gt 0 ] && echo " + small-files/ ($SMALL_FILES files)" || true):" \
       "$(du -sh "$DATA" | cut -f1), $(find "$DATA" -type f | wc -l) files, $(find "$DATA" | wc -l) entries ($PARTS);" \
       "1% changed = $CHANGED files per run; series: $SERIES_NAME; big file: $(skip big && echo skipped || echo "$BIG_MIB MiB, $BIG_KIND")"
  [ -z "$CONTENTS" ] || { echo; echo "corpus contents: $CONTENTS"; }
  echo
  echo "Ratios are tool / projectclone (above 1: projectclone is faster or leaner). Limit rows compare"
  echo "with projectclone's initial backup (tar), unchanged re-backup (stat walk) and restore (cp -a)."
  echo "Every row: median of $RUNS interleaved runs (tool order rotated every round; by wall, its CPU"
  echo "and RSS go with it) and the min-max over the runs."
  for m in $RESTORE_FS; do
    case $m in
      fresh) if [ -z "${MODE_FALLBACK:-}" ]; then echo "Restore (fresh ext4): each run into an ext4 (journal on) made for it on a loop device."
             else echo "Restore (disk (no loop device)): RESTORE_FS=fresh could not mount a file system; into a directory on the disk, removed before each run."; fi ;;
      used) echo "Restore (used ext4): into a new directory of one ext4 (journal on, loop device) that holds two copies of the data with every 2nd / 3rd file deleted ($USED_DF used, $USED_FILL, before the restore), removed after each run." ;;
      disk) echo "Restore (disk): into a directory on the disk, removed before each run." ;;
    esac
  done
  [ -z "$BAD" ] || echo "RESTORED TREE DIFFERS for: $BAD"
  echo
  echo "| step | tool | wall s | wall min-max | CPU s | CPU min-max | peak RSS MiB | wall ratio | CPU ratio | RSS ratio |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  for s in "${STEPS[@]}"; do
    stats "$(base_step "$s")" projectclone; bw=$MED_W bc=$MED_C br=$MED_R
    for t in "${TOOLS[@]}" ref; do
      stats "$s" "$t"
      [ "$N" -gt 0 ] || continue
      echo "| $s | $t | $MED_W | $MIN_W-$MAX_W | $MED_C | $MIN_C-$MAX_C | $MED_R |" \
           "$(ratio "$MED_W" "$bw") | $(ratio "$MED_C" "$bc") | $(ratio "$MED_R" "$br") |"
    done
  done
  echo
  for s in "${STEPS[@]}"; do
    [[ $s == restore* ]] || continue
    echo "$s runs (wall s, in run order): $(for t in "${TOOLS[@]}"; do printf '%s: %s; ' "$t" "$(printf '%s' "${RUNS[$s|$t]}" | cut -d' ' -f1 | tr '\n' ' ' | sed 's/ $//')"; done | sed 's/; $//')"
    echo
  done
  echo "| size (ratio to projectclone) | $(printf '%s | ' "${TOOLS[@]}")reference |"
  echo "|---|$(printf -- '---|%.0s' "${TOOLS[@]}")---|"
  row() { # TITLE ARRAYNAME FORMATTER REFERENCE
    local -n a=$2; local line="| $1 |"
    for t in "${TOOLS[@]}"; do
      if [ -n "${a[$t]:-}" ]; then line+=" $($3 "${a[$t]}") ($(ratio "${a[$t]}" "${a[projectclone]:-}")) |"; else line+=" - |"; fi
    done
    echo "$line $4 |"
  }
  # growth rows: median over the runs (ratio of medians), then min-max
  grow_row() { # TITLE ARRAYNAME REFERENCE
    local -n g=$2; local line="| $1 |" base m
    read -r base _ <<<"$(median_spread "${g[projectclone]:-}")"
    for t in "${TOOLS[@]}"; do
      read -r m sp <<<"$(median_spread "${g[$t]:-}")"
      line+=" $m ($(ratio "$m" "$base")) $sp |"
    done
    echo "$line $3 |"
  }
  row "repository after initial backup, MiB" SIZE1 mib "tar \\| zstd -3: $([ -n "$REF_TAR" ] && mib "$REF_TAR" || echo -)"
  row "repository after all backups (1 + $RUNS unchanged + $RUNS 1%-changed), MiB" SIZE3 mib ""
  skip series || row "$SERIES_NAME: repository, MiB" SERIES mib "each version tar \\| zstd -3, summed: $(mib "$REF_SERIES")"
  if ! skip big; then
    grow_row "$BIG_STEP: growth after 1 KiB insert, bytes (median, min-max of $RUNS)" GROW_I "1024 bytes inserted at 4096"
    grow_row "$BIG_STEP: growth after $EDITS × 4 KiB edits, bytes" GROW_E "$((EDITS * 4096)) bytes rewritten"
    grow_row "$BIG_STEP: growth after insert + edits, bytes" GROW_IE "$((EDITS * 4096 + 1024)) bytes"
  fi
} | tee "$OUT"
log "written to $OUT"
[ "${KEEP:-0}" = 1 ] || rm -rf "$R"   # KEEP=1 leaves data copy and repositories in benches/work/run
