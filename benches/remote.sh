#!/usr/bin/env bash
# Remote repositories: projectclone beside restic (its s3 and sftp backends) and rustic (its
# OpenDAL s3 and sftp services), each against the same local servers on 127.0.0.1.
#
#   benches/remote.sh [CORPUS_DIR]          full run (~20-30 min on 2 cores)
#   QUICK=1 benches/remote.sh [CORPUS_DIR]  tiny run for testing the harness (~3 minutes)
#
# Environment: QUICK=1 (tiny sizes), TOOLS="projectclone restic rustic" (subset/order),
# BACKENDS="s3 sftp", RUNS=3 (runs per row, interleaved), DELAY_MS=10 (added each way, so
# the round trip gains 2 x DELAY_MS), BLOBS=1000000 (tiny files of the many-blobs repository),
# SKIP="main latency blobs" (leave out parts: main = the four zero-latency rows, storage and, with them, the latency rows), RUSTIC=/path/to/rustic, PC=/path/to/projectclone,
# RESTORE_FS=fresh|disk (as in compare.sh), KEEP=1 (keep benches/work/remote).
#
# Servers, all started here on free ports of 127.0.0.1 and stopped (by PID) at the end, the
# way tests/it/servers.rs starts them (`.ci/install-servers` installs them):
#   S3    moto's server (`python3 -m moto.server`, objects in memory), one bucket `bench`;
#         every repository is a prefix of it. Not `rclone serve s3`: rustic's OpenDAL S3
#         fails `init` there, because rclone answers for the directory markers OpenDAL
#         writes and reads back as objects; moto serves all three tools.
#   SFTP  Debian's OpenSSH `sshd` with a generated host key and client key (public-key login
#         as the current user, internal-sftp). All three tools run the system `ssh`:
#         projectclone (`sftp://USER@127.0.0.1:PORT/PATH`, `ssh -p PORT -l USER HOST -s sftp`,
#         src/backend/sftp.rs), restic (`sftp://USER@127.0.0.1:PORT//PATH`) and OpenDAL's sftp
#         (the `openssh` crate, a ControlMaster `ssh`). OpenSSH reads the passwd home's
#         ~/.ssh/config, never $HOME's, so an `ssh` wrapper first on PATH runs
#         `/usr/bin/ssh -F <generated config>` (key, known_hosts, BatchMode); the real home is
#         not touched. Each tool keeps its default settings (connections, pack sizes,
#         compression); encryption is on everywhere.
#   delay benches/delayproxy.py in front of each server: every chunk is held DELAY_MS before it
#         is passed on, both ways (a pipe, not stop-and-wait: bandwidth is not limited), and the
#         bytes it forwards are counted.
# HOME and the XDG directories point into the run, so no tool reads or writes the real ones.
#
# The corpus. Without CORPUS_DIR one is built once under benches/work/remote-corpus from data
# present on a fresh machine of this kind (compare.sh's generators, smaller): a clone of this
# repository with its `.git` (~4 MB), the toolchain's rust-std libraries
# (`lib/rustlib/<host>/lib`, ~160 MB of rlibs, rmeta, shared objects and archives, 60 files),
# the first SRC_MIB (40) MB of the cargo registry's sources in sorted order (files of at most
# 4 MiB), and SMALL_FILES (10,000) files of 100 B..8 KiB cut from real sources, 100 per
# directory (~25 MB): ~230 MB in ~14,000 files. (QUICK: 10 MB of the sysroot, 5 MB of
# sources, 1,000 small files.)
# CORPUS_DIR is backed up as it is (never modified).
#
# Rows (each tool and backend has its own repository and cache; page cache dropped before
# every timed command; RUNS runs per row, interleaved: in each round every configuration runs
# the row once, the order rotated every round; median wall, min-max spread, CPU and RSS of
# the median run):
#   initial backup       backup into a repository made (untimed) just before
#   unchanged re-backup  the same data again into that repository (each tool's cache warm)
#   restore              restore of the latest snapshot into an empty place (RESTORE_FS: by
#                        default a freshly made ext4 on a loop device, see compare.sh)
#   check --read-data    full verification reading every pack back
#   backup / restore +2xDELAY_MS RTT   initial backup into a new repository and its restore,
#                        through the delaying proxies; reported as the ratio to the same
#                        configuration's own zero-latency median (target <= 1.5x)
# Target for every zero-latency row: projectclone <= 0.6x the fastest peer's median on the same
# backend.
# Storage (round 1, after the initial backup): objects in the repository (S3 keys under the
# prefix, without the directory markers, keys ending in `/`, that OpenDAL writes; regular
# files under the directory), bytes stored, objects per GB stored, and bytes
# sent per GB stored: bytes the client sent through the delaying proxy during the initial
# backup (on the wire: HTTP requests with headers, or SSH with its framing and MACs); for
# projectclone also its own count from `--json` (`storage`: requests, bytes_sent payload).
# Many blobs: BLOBS tiny files (one distinct 20-40 byte content each, so one data blob each;
# 1,000 per directory) backed up once into S3 by each tool (wall reported, untimed as a row),
# then a new client (empty cache, empty state directory) runs `snapshots` (no index needed),
# and another `ls latest` (the index loaded, the whole open): median of RUNS
# interleaved runs, with peak RSS (GNU time's %M, what `time -v` prints as "Maximum resident
# set size").
# Output: one markdown report, printed and written to
# benches/results/<date>-<commit>-remote[-quick][-without-<SKIP>].md.
# Timings belong here, never in tests.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=$ROOT/benches/work
R=$WORK/remote
mkdir -p "$WORK" benches/results

QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
  RUNS=${RUNS:-2} SMALL_FILES=${SMALL_FILES:-1000} BLOBS=${BLOBS:-3000} SYS_MIB=10 SRC_MIB=${SRC_MIB:-5}
else
  RUNS=${RUNS:-3} SMALL_FILES=${SMALL_FILES:-10000} BLOBS=${BLOBS:-1000000} SRC_MIB=${SRC_MIB:-40}
fi
DELAY_MS=${DELAY_MS:-10}
TOOLS=(${TOOLS:-projectclone restic rustic})
BACKENDS=(${BACKENDS:-s3 sftp})
SKIP=${SKIP:-}
RESTORE_FS=${RESTORE_FS:-fresh}
skip() { [[ " $SKIP " == *" $1 "* ]]; }
log() { echo "== $(date +%T) $*" >&2; }
die() { echo "remote.sh: $*" >&2; exit 1; }

# --- tools and servers, installed if missing ----------------------------------------------------
need() { command -v "$1" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$2" >/dev/null; }; }
need /usr/bin/time time
need python3 python3
[ "$RESTORE_FS" = fresh ] && need mkfs.ext4 e2fsprogs
PY=$(python3 -c 'import sys; print(sys.executable)')   # the real interpreter, not a shim
if [ ! -x /usr/sbin/sshd ] || ! "$PY" -c 'import moto.server, boto3' 2>/dev/null; then
  log "installing the servers (.ci/install-servers)"
  bash .ci/install-servers >/dev/null
fi
for t in "${TOOLS[@]}"; do
  case $t in
    projectclone) ;;
    restic) need restic restic ;;
    rustic)
      if [ -n "${RUSTIC:-}" ] && [ -x "$RUSTIC" ]; then :
      elif command -v rustic >/dev/null; then RUSTIC=$(command -v rustic)
      elif [ -x "$WORK/tools/bin/rustic" ]; then RUSTIC=$WORK/tools/bin/rustic
      else
        log "installing rustic (cargo install rustic-rs --locked), this takes a while"
        cargo install -q rustic-rs --locked --root "$WORK/tools"
        RUSTIC=$WORK/tools/bin/rustic
      fi ;;
    *) die "unknown tool $t" ;;
  esac
done
PC=${PC:-$ROOT/target/release/projectclone}
[ -x "$PC" ] || cargo build --release -q

# --- corpus -------------------------------------------------------------------------------------
if [ -n "${1:-}" ]; then
  DATA=$(cd "$1" && pwd)
  CORPUS_NAME=$DATA
else
  DATA=$WORK/remote-corpus$([ "$QUICK" = 1 ] && echo -quick || true)
  CORPUS_NAME="built: a clone of this repository, $([ "$QUICK" = 1 ] && echo "${SYS_MIB} MB of the sysroot lib" || echo "the toolchain's rust-std libraries"), ${SRC_MIB} MB of registry sources, $SMALL_FILES small files"
  if [ ! -e "$DATA/.complete" ]; then
    log "building corpus $DATA"
    rm -rf "$DATA" && mkdir -p "$DATA"
    git clone -q --no-local "$ROOT" "$DATA/projectclone-git"
    if [ "$QUICK" = 1 ]; then
      benches/compare.sh --gen slice "$(rustc --print sysroot)/lib" "$DATA/rust-std" "$SYS_MIB"
    else
      cp -a "$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/lib" "$DATA/rust-std"
    fi
    pool=$(ls -d ~/.cargo/registry/src/*/ 2>/dev/null | head -1)
    [ -n "$pool" ] || pool=$(rustc --print sysroot)
    benches/compare.sh --gen slice "$pool" "$DATA/registry-src" "$SRC_MIB"
    benches/compare.sh --gen small "$DATA/small-files" "$SMALL_FILES"
    touch "$DATA/.complete"
  fi
fi
tree_sum() { find "$1" -type f ! -name .complete -printf '%s\n' | awk '{n++; s+=$1} END{print n+0, s+0}'; }
WANT=$(tree_sum "$DATA")
DATA_BYTES=${WANT#* }

# --- run directory, environment -------------------------------------------------------------------
PIDS=()
MNT=$R/restore-fs IMG=$R/restore.img
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  mountpoint -q "$MNT" 2>/dev/null && umount "$MNT"
  rm -f "$IMG"
  [ "${KEEP:-0}" = 1 ] || rm -rf "$R"
}
trap cleanup EXIT
rm -rf "$R" && mkdir -p "$R"/{home,cache,sftp,bin,cwd,profiles,tmp}
export HOME=$R/home XDG_CONFIG_HOME=$R/home/.config XDG_CACHE_HOME=$R/home/.cache \
  XDG_DATA_HOME=$R/home/.local/share XDG_STATE_HOME=$R/home/.local/state
export PROJECTCLONE_PASSWORD=bench RESTIC_PASSWORD=bench RUSTIC_PASSWORD=bench
export AWS_ACCESS_KEY_ID=bench-key AWS_SECRET_ACCESS_KEY=bench-secret AWS_REGION=us-east-1 \
  AWS_DEFAULT_REGION=us-east-1 AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
unset AWS_ENDPOINT_URL AWS_ENDPOINT_URL_S3 AWS_SESSION_TOKEN AWS_PROFILE PROJECTCLONE_SSH_COMMAND 2>/dev/null || true
USER_NAME=$(id -un)
BUCKET=bench

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_for() { # DESCRIPTION CMD...: retries CMD for up to 60 s
  local what=$1; shift
  for _ in $(seq 600); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  die "$what did not come up"
}

# S3 helper (boto3, which moto[server] brings): mkbucket, stat PREFIX -> "objects bytes", rm PREFIX.
S3_PY=$(cat <<'PYEOF'
import os, sys, boto3
endpoint, bucket, op = sys.argv[1:4]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name=os.environ["AWS_REGION"])
if op == "ping":
    s3.list_buckets()
elif op == "mkbucket":
    s3.create_bucket(Bucket=bucket)
else:
    prefix = sys.argv[4].strip("/") + "/"
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [(c["Key"], c["Size"]) for c in page.get("Contents", [])]
    if op == "stat":   # directory markers (keys ending in /, OpenDAL writes them) not counted
        keys = [(k, s) for k, s in keys if not k.endswith("/")]
        print(len(keys), sum(s for _, s in keys))
    elif op == "rm":
        for i in range(0, len(keys), 1000):
            s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k, _ in keys[i:i + 1000]]})
PYEOF
)
s3op() { "$PY" -c "$S3_PY" "http://127.0.0.1:$MOTO_PORT" "$BUCKET" "$@"; }

# moto
MOTO_PORT=$(free_port)
(cd "$R/tmp" && exec "$PY" -m moto.server -H 127.0.0.1 -p "$MOTO_PORT") >"$R/moto.log" 2>&1 &
PIDS+=($!)
wait_for "moto on port $MOTO_PORT" s3op ping
s3op mkbucket

# sshd, its keys and the client side
S=$R/ssh
mkdir -p "$S" /run/sshd
ssh-keygen -q -t ed25519 -N "" -C bench-host -f "$S/host_key"
ssh-keygen -q -t ed25519 -N "" -C bench-client -f "$S/client_key"
cp "$S/client_key.pub" "$S/authorized_keys"
SSH_PORT=$(free_port)
cat >"$S/sshd_config" <<EOF
Port $SSH_PORT
ListenAddress 127.0.0.1
HostKey $S/host_key
AuthorizedKeysFile $S/authorized_keys
PidFile none
PermitRootLogin prohibit-password
AuthenticationMethods publickey
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
StrictModes no
UsePAM no
UseDNS no
PrintMotd no
X11Forwarding no
AllowTcpForwarding no
AllowAgentForwarding no
PermitTTY no
MaxStartups 100
MaxSessions 100
Subsystem sftp internal-sftp
EOF
echo "[127.0.0.1]:*,127.0.0.1 $(cut -d' ' -f1-2 "$S/host_key.pub")" >"$S/known_hosts"
cat >"$S/ssh_config" <<EOF
Host 127.0.0.1
  User $USER_NAME
  IdentityFile $S/client_key
  IdentitiesOnly yes
  UserKnownHostsFile $S/known_hosts
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  BatchMode yes
  ConnectTimeout 20
  LogLevel ERROR
EOF
for tool in ssh sftp; do
  printf '#!/bin/sh\n# OpenSSH reads the passwd home'"'"'s ~/.ssh/config, not $HOME'"'"'s: name this run'"'"'s.\nexec /usr/bin/%s -F %s "$@"\n' \
    "$tool" "$S/ssh_config" >"$R/bin/$tool"
  chmod 755 "$R/bin/$tool"
done
export PATH=$R/bin:$PATH
/usr/sbin/sshd -D -e -f "$S/sshd_config" >"$S/sshd.log" 2>&1 &
PIDS+=($!)
wait_for "sshd on port $SSH_PORT" ssh -p "$SSH_PORT" 127.0.0.1 true

# delaying proxies, one in front of each server
declare -A PROXY_PORT PROXY_PID PROXY_STATS
start_proxy() { # NAME TARGET_PORT
  local port; port=$(free_port)
  "$PY" benches/delayproxy.py "$port" "$2" "$DELAY_MS" "$R/proxy-$1.stats" 2>"$R/proxy-$1.log" &
  PIDS+=($!)
  PROXY_PORT[$1]=$port PROXY_PID[$1]=$! PROXY_STATS[$1]=$R/proxy-$1.stats
  wait_for "delay proxy $1" test -s "$R/proxy-$1.stats"
}
# proxy_stats NAME -> "CONNECTIONS BYTES_UP BYTES_DOWN", fresh (written on SIGUSR1)
proxy_stats() {
  local f=${PROXY_STATS[$1]} seq
  read -r seq _ <"$f"
  kill -USR1 "${PROXY_PID[$1]}"
  for _ in $(seq 500); do
    local s c u d
    read -r s c u d <"$f" || true
    [ "${s:-$seq}" != "$seq" ] && { echo "$c $u $d"; return; }
    sleep 0.01
  done
  die "proxy $1 did not write its counts"
}
if ! skip latency; then
  start_proxy s3 "$MOTO_PORT"
  start_proxy sftp "$SSH_PORT"
fi
cd "$R/cwd"   # OpenDAL's sftp puts its ssh ControlMaster socket directory in the working directory

# --- per-tool commands -----------------------------------------------------------------------------
# repo TOOL BACKEND NAME [direct|via [CACHE]]: sets BASE (the tool with repository and cache
# options) and WHERE (bucket prefix or directory) for repository NAME, direct or `via` the
# delaying proxy; the cache is CACHE or one of the repository's own.
repo() {
  local tool=$1 be=$2 name=$3 port cache=${5:-$R/cache/$3} prof=$R/profiles/$3.toml
  if [ "${4:-}" = via ]; then port=${PROXY_PORT[$be]}
  elif [ "$be" = s3 ]; then port=$MOTO_PORT
  else port=$SSH_PORT; fi
  if [ "$be" = s3 ]; then
    WHERE=$name
    case $tool in
      projectclone) BASE=("$PC" -r "s3:http://127.0.0.1:$port/$BUCKET/$name" --cache-dir "$cache") ;;
      restic) BASE=(restic -r "s3:http://127.0.0.1:$port/$BUCKET/$name" --cache-dir "$cache") ;;
      rustic)
        printf '[repository]\nrepository = "opendal:s3"\n[repository.options]\nendpoint = "http://127.0.0.1:%s"\nbucket = "%s"\nroot = "/%s"\nregion = "us-east-1"\naccess_key_id = "%s"\nsecret_access_key = "%s"\n' \
          "$port" "$BUCKET" "$name" "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >"$prof"
        BASE=("$RUSTIC" -P "$prof" --cache-dir "$cache" --no-progress) ;;
    esac
  else
    WHERE=$R/sftp/$name
    case $tool in
      projectclone) BASE=("$PC" -r "sftp://$USER_NAME@127.0.0.1:$port$WHERE" --cache-dir "$cache") ;;
      restic) BASE=(restic -r "sftp://$USER_NAME@127.0.0.1:$port/$WHERE" --cache-dir "$cache") ;;
      rustic)
        printf '[repository]\nrepository = "opendal:sftp"\n[repository.options]\nendpoint = "ssh://%s@127.0.0.1:%s"\nroot = "%s"\nuser = "%s"\nknown_hosts_strategy = "strict"\n' \
          "$USER_NAME" "$port" "$WHERE" "$USER_NAME" >"$prof"
        BASE=("$RUSTIC" -P "$prof" --cache-dir "$cache" --no-progress) ;;
    esac
  fi
}
init_cmd() { CMD=("${BASE[@]}" init); }
backup_cmd() { # TOOL DIR
  case $1 in
    projectclone) CMD=("${BASE[@]}" -q --json backup "$2") ;;   # --json: the storage counters
    restic) CMD=("${BASE[@]}" -q backup "$2") ;;
    rustic) CMD=("${BASE[@]}" backup "$2") ;;
  esac
}
restore_cmd() { # TOOL TARGET
  case $1 in
    projectclone|restic) CMD=("${BASE[@]}" -q restore latest --target "$2") ;;
    rustic) CMD=("${BASE[@]}" restore latest "$2") ;;
  esac
}
check_cmd() { case $1 in rustic) CMD=("${BASE[@]}" check --read-data) ;; *) CMD=("${BASE[@]}" -q check --read-data) ;; esac; }
snapshots_cmd() { case $1 in rustic) CMD=("${BASE[@]}" snapshots) ;; *) CMD=("${BASE[@]}" -q snapshots) ;; esac; }
ls_cmd() { case $1 in rustic) CMD=("${BASE[@]}" ls latest) ;; *) CMD=("${BASE[@]}" -q ls latest) ;; esac; }
untimed() { # runs CMD, quiet unless it fails
  if ! "${CMD[@]}" >"$R/out" 2>"$R/err"; then
    echo "FAILED: ${CMD[*]}" >&2; cat "$R/err" >&2; exit 1
  fi
}
drop_repo() { # BACKEND WHERE
  if [ "$1" = s3 ]; then s3op rm "$2"; else rm -rf "$2"; fi
}
repo_size() { # BACKEND WHERE -> "objects bytes"
  if [ "$1" = s3 ]; then s3op stat "$2"; else tree_sum "$2"; fi
}

# --- measurement -------------------------------------------------------------------------------------
declare -A RUNSOF SEEN
ROWS=() LOADS=()
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }
timed() { # ROW CONFIG CMD...: cold page cache; appends "wall cpu rss" to RUNSOF[ROW|CONFIG]
  local row=$1 cfg=$2; shift 2
  drop_caches
  LOADS+=("$(cut -d' ' -f1 /proc/loadavg)")
  if ! /usr/bin/time -f "%e %U %S %M" -o "$R/time" "$@" >"$R/out" 2>"$R/err"; then
    echo "FAILED: $row / $cfg: $*" >&2; cat "$R/err" >&2; exit 1
  fi
  local wall user sys rss
  read -r wall user sys rss <"$R/time"
  LAST_WALL=$wall
  [ -n "${SEEN[$row]:-}" ] || { SEEN[$row]=1; ROWS+=("$row"); }
  RUNSOF[$row|$cfg]+="$wall $(awk -v u="$user" -v s="$sys" 'BEGIN{printf "%.2f", u+s}') $((rss / 1024))"$'\n'
}
# stat ROW CONFIG -> "median_wall cpu rss min max n" (lower median for an even count; CPU and
# RSS of the median run)
stat_of() {
  local runs=${RUNSOF[$1|$2]:-}
  [ -n "$runs" ] || { echo "- - - - - 0"; return; }
  printf '%s' "$runs" | sort -n | awk '{w[NR]=$1; c[NR]=$2; m[NR]=$3} END{k=int((NR+1)/2); print w[k], c[k], m[k], w[1], w[NR], NR}'
}

# Where restores write: `target_up` makes an empty place and sets TARGET (not yet existing),
# `target_down` removes it. RESTORE_FS=fresh: a new ext4 on a loop device each time (see
# compare.sh for why); disk: a directory on the disk.
FS_BYTES=$(( DATA_BYTES * 2 + (1 << 30) )) FS_INODES=$(( $(find "$DATA" | wc -l) * 2 + 10000 ))
target_up() {
  if [ "$RESTORE_FS" = fresh ]; then
    rm -f "$IMG" && truncate -s "$FS_BYTES" "$IMG" && mkfs.ext4 -q -F -N "$FS_INODES" "$IMG" \
      && mkdir -p "$MNT" && mount -o loop "$IMG" "$MNT" 2>/dev/null && TARGET=$MNT/out && return 0
    log "cannot mount a fresh file system (root and a loop device needed): RESTORE_FS=disk"
    rm -f "$IMG"; RESTORE_FS=disk
  fi
  rm -rf "$R/restore" && sync && TARGET=$R/restore
}
target_down() {
  if [ "$RESTORE_FS" = fresh ]; then umount "$MNT" && rm -f "$IMG"; else rm -rf "$R/restore"; fi
}

CFGS=()
for b in "${BACKENDS[@]}"; do for t in "${TOOLS[@]}"; do CFGS+=("$t:$b"); done; done
NC=${#CFGS[@]}
declare -A OBJS STORED PCREQ PCSENT WIRE_UP LAT_DOWN
BAD=
LAT_BACKUP="backup +$((2 * DELAY_MS)) ms RTT" LAT_RESTORE="restore +$((2 * DELAY_MS)) ms RTT"

for ((round = 0; round < RUNS; round++)); do
  skip main && break
  ORDER=()
  for ((k = 0; k < NC; k++)); do ORDER+=("${CFGS[(k + round) % NC]}"); done
  for c in "${ORDER[@]}"; do
    t=${c%:*} b=${c#*:} name=${t}-${b}-r$round
    log "round $((round + 1))/$RUNS initial backup: $c"
    repo "$t" "$b" "$name"; init_cmd "$t"; untimed
    backup_cmd "$t" "$DATA"; timed "initial backup" "$c" "${CMD[@]}"
    if [ "$round" = 0 ]; then
      read -r OBJS[$c] STORED[$c] < <(repo_size "$b" "$WHERE")
      if [ "$t" = projectclone ]; then
        read -r PCREQ[$c] PCSENT[$c] < <("$PY" -c 'import json,sys; s=json.load(open(sys.argv[1]))["storage"]; print(s["requests"], s["bytes_sent"])' "$R/out")
      fi
    fi
  done
  for c in "${ORDER[@]}"; do
    t=${c%:*} b=${c#*:}; repo "$t" "$b" "${t}-${b}-r$round"
    log "round $((round + 1))/$RUNS unchanged re-backup: $c"
    backup_cmd "$t" "$DATA"; timed "unchanged re-backup" "$c" "${CMD[@]}"
  done
  for c in "${ORDER[@]}"; do
    t=${c%:*} b=${c#*:}; repo "$t" "$b" "${t}-${b}-r$round"
    log "round $((round + 1))/$RUNS restore: $c"
    target_up
    restore_cmd "$t" "$TARGET"; timed "restore" "$c" "${CMD[@]}"
    if [ "$round" = 0 ]; then
      got=$(tree_sum "$TARGET" 2>/dev/null || true)
      [ "$got" = "$WANT" ] || { echo "WARNING: $c restored $got (files bytes), data has $WANT" >&2; BAD+=" $c"; }
    fi
    target_down
  done
  for c in "${ORDER[@]}"; do
    t=${c%:*} b=${c#*:}; repo "$t" "$b" "${t}-${b}-r$round"
    log "round $((round + 1))/$RUNS check --read-data: $c"
    check_cmd "$t"; timed "check --read-data" "$c" "${CMD[@]}"
  done
  if ! skip latency; then
    for c in "${ORDER[@]}"; do
      t=${c%:*} b=${c#*:} name=${t}-${b}-lat$round
      log "round $((round + 1))/$RUNS $LAT_BACKUP: $c"
      repo "$t" "$b" "$name" via; init_cmd "$t"; untimed
      read -r _ up0 _ < <(proxy_stats "$b")
      backup_cmd "$t" "$DATA"; timed "$LAT_BACKUP" "$c" "${CMD[@]}"
      read -r _ up1 _ < <(proxy_stats "$b")
      [ "$round" = 0 ] && WIRE_UP[$c]=$((up1 - up0))
    done
    for c in "${ORDER[@]}"; do
      t=${c%:*} b=${c#*:}; repo "$t" "$b" "${t}-${b}-lat$round" via
      log "round $((round + 1))/$RUNS $LAT_RESTORE: $c"
      target_up
      read -r _ _ d0 < <(proxy_stats "$b")
      restore_cmd "$t" "$TARGET"; timed "$LAT_RESTORE" "$c" "${CMD[@]}"
      read -r _ _ d1 < <(proxy_stats "$b")
      [ "$round" = 0 ] && LAT_DOWN[$c]=$((d1 - d0))
      target_down
      drop_repo "$b" "$WHERE"
    done
  fi
  for c in "${ORDER[@]}"; do   # this round's repositories are done: free moto's memory
    t=${c%:*} b=${c#*:}; repo "$t" "$b" "${t}-${b}-r$round"; drop_repo "$b" "$WHERE"
  done
done

# --- many blobs: a new client opens the repository -----------------------------------------------
BLOB_ROWS=0
declare -A BLOB_BACKUP BLOB_OBJS
if ! skip blobs; then
  BD=$WORK/remote-blobs-$BLOBS
  BIGGER=$({ ls -d "$WORK"/remote-blobs-*/.complete 2>/dev/null || true; } | sed 's,.*remote-blobs-\([0-9]*\)/.complete,\1,' | sort -n \
    | awk -v n="$BLOBS" '$1 > n {print; exit}')
  if [ ! -e "$BD/.complete" ] && [ -n "$BIGGER" ] && [ $((BLOBS % 1000)) = 0 ]; then
    # The generator is deterministic and fills directories of 1,000 in order: the first
    # BLOBS/1000 directories of a bigger tree are this tree (hard links, instant).
    log "taking $BLOBS tiny files from $WORK/remote-blobs-$BIGGER"
    rm -rf "$BD" && mkdir -p "$BD"
    for ((i = 0; i < BLOBS / 1000; i++)); do cp -al "$WORK/remote-blobs-$BIGGER/$(printf d%04d "$i")" "$BD/"; done
    touch "$BD/.complete"
  fi
  if [ ! -e "$BD/.complete" ]; then
    log "making $BLOBS tiny files in $BD"
    rm -rf "$BD"
    "$PY" - "$BD" "$BLOBS" <<'PYEOF'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(16)
for i in range(n):
    d = os.path.join(root, "d%04d" % (i // 1000))
    if i % 1000 == 0:
        os.makedirs(d)
    with open(os.path.join(d, "f%03d" % (i % 1000)), "wb") as f:
        f.write(b"blob %d %s\n" % (i, rng.randbytes(rng.randrange(4, 12)).hex().encode()))
PYEOF
    touch "$BD/.complete"
  fi
  for t in "${TOOLS[@]}"; do
    log "many blobs: backing up $BLOBS files with $t"
    repo "$t" s3 "$t-blobs"; init_cmd "$t"; untimed
    backup_cmd "$t" "$BD"
    start=$(date +%s.%N); untimed; end=$(date +%s.%N)
    BLOB_BACKUP[$t]=$(awk -v a="$start" -v b="$end" 'BEGIN{printf "%.1f", b - a}')
    read -r BLOB_OBJS[$t] _ < <(repo_size s3 "$WHERE")
  done
  for ((round = 0; round < RUNS; round++)); do
    for ((k = 0; k < ${#TOOLS[@]}; k++)); do
      t=${TOOLS[(k + round) % ${#TOOLS[@]}]}
      log "many blobs round $((round + 1))/$RUNS: snapshots, new client: $t"
      fresh=$R/newclient-$t-$round   # empty: cache, state (projectclone's trust records)
      repo "$t" s3 "$t-blobs" direct "$fresh/cache"
      snapshots_cmd "$t"
      timed "snapshots, new client, $BLOBS blobs" "$t:s3" \
        env XDG_STATE_HOME="$fresh/state" XDG_CACHE_HOME="$fresh/xdg-cache" "${CMD[@]}"
      rm -rf "$fresh"
      # ls needs the index (every tool loads it): the whole open of a new client.
      repo "$t" s3 "$t-blobs" direct "$fresh/cache"
      ls_cmd "$t"
      timed "ls latest, new client, $BLOBS blobs" "$t:s3" \
        env XDG_STATE_HOME="$fresh/state" XDG_CACHE_HOME="$fresh/xdg-cache" "${CMD[@]}"
      rm -rf "$fresh"
    done
  done
  BLOB_ROWS=1
fi

# --- report -------------------------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0 && a != "-" && a != "") printf "%.2f", a / b; else printf "-" }'; }
mib() { awk -v a="$1" 'BEGIN{printf "%.1f", a / 1048576}'; }
per_gb() { awk -v a="$1" -v s="$2" 'BEGIN{ if (s > 0 && a != "") printf "%.0f", a / (s / 1e9); else printf "-" }'; }
gb_per_gb() { awk -v a="$1" -v s="$2" 'BEGIN{ if (s > 0 && a != "") printf "%.3f GB", a / s; else printf "-" }'; }
cd "$ROOT"
COMMIT=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || echo "+dirty")
SKIPPED=$(echo $SKIP | tr ' ' '-')
OUT=benches/results/$(date +%F)-$(git rev-parse --short HEAD)-remote$([ "$QUICK" = 1 ] && echo -quick || true)${SKIPPED:+-without-$SKIPPED}.md
tool_version() {
  case $1 in
    projectclone) "$PC" --version ;;
    restic) restic version | cut -d' ' -f1-2 ;;
    rustic) "$RUSTIC" --version ;;
  esac 2>/dev/null | head -1
}
LOAD=$(printf '%s\n' "${LOADS[@]}" | awk '{s+=$1; if ($1>m) m=$1} END{printf "mean %.1f, max %.1f", s/NR, m}')
# the fastest peer's median on the same backend: "wall tool"
fastest_peer() { # ROW BACKEND
  local t best=- who=-
  for t in "${TOOLS[@]}"; do
    [ "$t" = projectclone ] && continue
    read -r w _ < <(stat_of "$1" "$t:$2")
    [ "$w" = - ] && continue
    if [ "$best" = - ] || awk -v a="$w" -v b="$best" 'BEGIN{exit !(a < b)}'; then best=$w who=$t; fi
  done
  echo "$best $who"
}
{
  echo "# remote.sh$([ "$QUICK" = 1 ] && echo " (QUICK)" || true) $(date -Iseconds), commit $COMMIT"
  echo
  echo "machine: $(nproc) cores, $(free -g | awk '/Mem/{print $2}') GiB, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uname -r);" \
       "1-minute load average before each timed command: $LOAD (the servers, the proxies and any other work on the machine share its cores)"
  echo
  echo "tools: $(for t in "${TOOLS[@]}"; do printf '%s; ' "$(tool_version "$t")"; done)moto $("$PY" -c 'import moto; print(moto.__version__)'); $(/usr/sbin/sshd -V 2>&1 | head -1 || ssh -V 2>&1)"
  echo
  if skip main; then
    echo "Only the many-blobs part (SKIP=\"$SKIP\"); S3: moto (in memory) on 127.0.0.1."
  else
  echo "corpus: $CORPUS_NAME: $(mib "$DATA_BYTES") MiB in ${WANT% *} files. S3: moto (in memory) on 127.0.0.1; SFTP: OpenSSH sshd on 127.0.0.1 (repository on this disk)." \
       "Latency rows: through benches/delayproxy.py adding ${DELAY_MS} ms each way ($((2 * DELAY_MS)) ms per round trip)." \
       "Restores: $([ "$RESTORE_FS" = fresh ] && echo "each into a freshly made ext4 on a loop device" || echo "into a directory on the disk")." \
       "Median of $RUNS interleaved runs; spread = min-max wall; CPU and RSS are the client's, of the median run.${BAD:+ RESTORED TREE DIFFERS for:$BAD}"
  echo
  echo "Target: projectclone <= 0.6x the fastest peer's median wall on the same backend."
  echo
  echo "| row | backend | tool | median wall s | spread s | CPU s | peak RSS MiB | / fastest peer | target <= 0.6x |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for row in "${ROWS[@]}"; do
    [[ "$row" == *RTT* || "$row" == snapshots* ]] && continue
    for b in "${BACKENDS[@]}"; do
      read -r fw fwho < <(fastest_peer "$row" "$b")
      for t in "${TOOLS[@]}"; do
        read -r w c m lo hi n < <(stat_of "$row" "$t:$b")
        [ "$w" = - ] && continue
        if [ "$t" = projectclone ]; then
          r=$(ratio "$w" "$fw")
          verdict=$(awk -v r="$r" 'BEGIN{ if (r == "-") print "-"; else if (r <= 0.6) print "met"; else print "missed" }')
          echo "| $row | $b | **$t** | $w | $lo-$hi | $c | $m | $r (vs $fwho) | $verdict |"
        else
          echo "| $row | $b | $t | $w | $lo-$hi | $c | $m | $(ratio "$w" "$fw") | |"
        fi
      done
    done
  done
  fi
  if ! skip latency && ! skip main; then
    echo
    echo "Added latency: ${DELAY_MS} ms each way. Ratio = median with latency / the same configuration's zero-latency median. Target <= 1.5x."
    echo
    echo "| tool | backend | backup 0 ms s | backup +$((2 * DELAY_MS)) ms s (spread) | ratio | restore 0 ms s | restore +$((2 * DELAY_MS)) ms s (spread) | ratio | target <= 1.5x |"
    echo "|---|---|---|---|---|---|---|---|---|"
    for c in "${CFGS[@]}"; do
      read -r b0 _ < <(stat_of "initial backup" "$c")
      read -r b1 _ _ bl bh _ < <(stat_of "$LAT_BACKUP" "$c")
      read -r r0 _ < <(stat_of "restore" "$c")
      read -r r1 _ _ rl rh _ < <(stat_of "$LAT_RESTORE" "$c")
      rb=$(ratio "$b1" "$b0") rr=$(ratio "$r1" "$r0")
      v=$(awk -v a="$rb" -v b="$rr" 'BEGIN{ if (a == "-" || b == "-") print "-"; else if (a <= 1.5 && b <= 1.5) print "met"; else if (a <= 1.5) print "backup met, restore missed"; else if (b <= 1.5) print "backup missed, restore met"; else print "missed" }')
      echo "| ${c%:*} | ${c#*:} | $b0 | $b1 ($bl-$bh) | $rb | $r0 | $r1 ($rl-$rh) | $rr | $v |"
    done
  fi
  skip main || {
  echo
  echo "Storage after the initial backup (round 1). Bytes sent: what the client sent through the delaying proxy during its initial backup (on the wire: HTTP with headers, or SSH with its framing and MACs); projectclone's own count (\`--json\` \`storage\`: requests, and bytes_sent, the payload) in the last column."
  echo
  echo "| tool | backend | objects | stored MiB | objects per GB stored | bytes sent per GB stored | projectclone's own count: requests (bytes_sent per GB stored) |"
  echo "|---|---|---|---|---|---|---|"
  for c in "${CFGS[@]}"; do
    [ -n "${OBJS[$c]:-}" ] || continue
    st=${STORED[$c]}
    pc=-
    [ -n "${PCREQ[$c]:-}" ] && pc="${PCREQ[$c]} requests ($(gb_per_gb "${PCSENT[$c]}" "$st") per GB stored)"
    echo "| ${c%:*} | ${c#*:} | ${OBJS[$c]} | $(mib "$st") | $(per_gb "${OBJS[$c]}" "$st") | $(gb_per_gb "${WIRE_UP[$c]:-}" "$st") | $pc |"
  done
  }
  if [ "$BLOB_ROWS" = 1 ]; then
    echo
    echo "Many blobs: $BLOBS tiny files (one distinct data blob each) backed up once into S3 (moto); then a new client (empty cache and state) runs \`snapshots\` (no index needed), and another new client \`ls latest\` (the index loaded: the whole open). Median of $RUNS interleaved runs; peak RSS as \`/usr/bin/time -v\` reports it."
    echo
    echo "| command | tool | backup of the $BLOBS files, s (once) | objects in the repository | wall s | spread s | CPU s | peak RSS MiB | / fastest peer | target <= 0.6x |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    for cmd in snapshots "ls latest"; do
      row="$cmd, new client, $BLOBS blobs"
      read -r fw fwho < <(fastest_peer "$row" s3)
      for t in "${TOOLS[@]}"; do
        read -r w c m lo hi n < <(stat_of "$row" "$t:s3")
        if [ "$t" = projectclone ]; then
          r=$(ratio "$w" "$fw")
          verdict=$(awk -v r="$r" 'BEGIN{ if (r == "-") print "-"; else if (r <= 0.6) print "met"; else print "missed" }')
          echo "| $cmd | **$t** | ${BLOB_BACKUP[$t]} | ${BLOB_OBJS[$t]} | $w | $lo-$hi | $c | $m | $r (vs $fwho) | $verdict |"
        else
          echo "| $cmd | $t | ${BLOB_BACKUP[$t]} | ${BLOB_OBJS[$t]} | $w | $lo-$hi | $c | $m | $(ratio "$w" "$fw") | |"
        fi
      done
    done
  fi
  echo
  echo "All runs (wall s, in run order):"
  echo
  for row in "${ROWS[@]}"; do
    line="- $row:"
    for c in "${CFGS[@]}"; do
      [ -n "${RUNSOF[$row|$c]:-}" ] || continue
      line+=" $c $(printf '%s' "${RUNSOF[$row|$c]}" | cut -d' ' -f1 | tr '\n' ' ' | sed 's/ $//');"
    done
    echo "${line%;}"
  done
} | tee "$OUT"
log "written to $OUT"
