#!/usr/bin/env bash
# The steps of the GitHub Action (action.yml) and of the GitLab CI template
# (ci/gitlab/projectclone.gitlab-ci.yml), runnable anywhere with the variables a runner sets:
#
#   ci/action.sh install   download the release binary, check its SHA-256, put it on PATH
#   ci/action.sh backup    back up the workspace (or PC_PATHS) into $PROJECTCLONE_REPO
#   ci/action.sh prune     forget by PC_KEEP_* rules and prune
#
# Inputs (environment; the action maps its `with:` inputs onto them):
#   PC_VERSION        release to install (default: this script's own release)
#   PC_RELEASE_BASE   where releases live (default https://github.com/$PC_RELEASE_REPOSITORY/
#                     releases/download); any URL curl reads, file:// included
#   PC_RELEASE_REPOSITORY  owner/name whose releases to use (the action passes its own)
#   PC_PATHS          paths to back up, one per line (default: $GITHUB_WORKSPACE or
#                     $CI_PROJECT_DIR, else the current folder)
#   PC_TAGS           extra tags, one per line; PC_EXCLUDE globs, one per line
#   PC_INIT           "true": create the repository when there is none (exit 10 otherwise)
#   PC_KEEP_LAST, PC_KEEP_DAILY, PC_KEEP_WEEKLY, PC_KEEP_MONTHLY  retention for `prune`
#   PROJECTCLONE_REPO, PROJECTCLONE_PASSWORD (or _FILE) and the storage credentials
#                     (AWS_*, ssh keys) come from the CI's secrets, as for the CLI itself.
# Outputs go to $GITHUB_OUTPUT when set (GitLab: to $PC_OUTPUT, a dotenv file, when set):
#   path, version (install); snapshot-id (backup); forgotten (prune).
set -euo pipefail

VERSION_OF_THIS_SCRIPT=1.0.0
TARGET=x86_64-unknown-linux-gnu

die() { echo "projectclone action: $*" >&2; exit 1; }
output() { # NAME VALUE
  if [ -n "${GITHUB_OUTPUT:-}" ]; then printf '%s=%s\n' "$1" "$2" >>"$GITHUB_OUTPUT"; fi
  if [ -n "${PC_OUTPUT:-}" ]; then
    printf 'PROJECTCLONE_%s=%s\n' "$(printf '%s' "$1" | tr 'a-z-' 'A-Z_')" "$2" >>"$PC_OUTPUT"
  fi
  echo "$1=$2"
}
lines() { printf '%s\n' "${1:-}" | sed 's/^[[:space:]]*//; s/[[:space:]]*$//' | grep -v '^$' || true; }

install() {
  local version=${PC_VERSION:-$VERSION_OF_THIS_SCRIPT}
  version=${version#v}
  local base=${PC_RELEASE_BASE:-}
  if [ -z "$base" ]; then
    [ -n "${PC_RELEASE_REPOSITORY:-}" ] || die "PC_RELEASE_BASE or PC_RELEASE_REPOSITORY must say where releases are"
    base=https://github.com/$PC_RELEASE_REPOSITORY/releases/download
  fi
  case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) ;;
    *) die "release binaries are built for Linux x86_64 only, not $(uname -s) $(uname -m); build from source: cargo install --path ." ;;
  esac
  local name=projectclone-$version-$TARGET.tar.gz
  local dest=${RUNNER_TEMP:-${TMPDIR:-/tmp}}/projectclone-$version
  rm -rf "$dest" && mkdir -p "$dest"
  curl -fsSL --retry 3 -o "$dest/$name" "$base/v$version/$name" || die "cannot download $base/v$version/$name"
  curl -fsSL --retry 3 -o "$dest/$name.sha256" "$base/v$version/$name.sha256" ||
    die "cannot download $base/v$version/$name.sha256"
  (cd "$dest" && sha256sum --check --strict --quiet "$name.sha256") ||
    die "$name does not match its SHA-256 ($name.sha256): not installed"
  tar -xzf "$dest/$name" -C "$dest"
  local bin=$dest/projectclone-$version-$TARGET
  "$bin/projectclone" --version >/dev/null || die "the downloaded binary does not run"
  if [ -n "${GITHUB_PATH:-}" ]; then echo "$bin" >>"$GITHUB_PATH"; fi
  output path "$bin/projectclone"
  output version "$("$bin/projectclone" --version | head -n 1)"
}

pc() { "${PC_BIN:-projectclone}" "$@"; }

backup() {
  [ -n "${PROJECTCLONE_REPO:-}" ] || die "PROJECTCLONE_REPO is not set: give the repository location (a secret)"
  local status=0
  pc snapshots --json >/dev/null 2>&1 || status=$?
  if [ "$status" = 10 ]; then
    [ "${PC_INIT:-false}" = true ] || die "no repository at \$PROJECTCLONE_REPO; create it once with \`projectclone init\`, or set the input init: true"
    pc init
  fi
  local args=() p
  while IFS= read -r p; do args+=("$p"); done < <(lines "${PC_PATHS:-${GITHUB_WORKSPACE:-${CI_PROJECT_DIR:-.}}}")
  args+=(--tag ci)
  while IFS= read -r p; do args+=(--tag "$p"); done < <(lines "${PC_TAGS:-}")
  while IFS= read -r p; do args+=(--exclude "$p"); done < <(lines "${PC_EXCLUDE:-}")
  local ref=${GITHUB_REF_NAME:-${CI_COMMIT_REF_NAME:-}}
  local sha=${GITHUB_SHA:-${CI_COMMIT_SHA:-}}
  local proj=${GITHUB_REPOSITORY:-${CI_PROJECT_PATH:-}}
  local run=${GITHUB_RUN_ID:-${CI_PIPELINE_ID:-}}
  [ -z "$sha" ] || args+=(--note "${proj:+$proj }${ref:+$ref }${sha}${run:+ (run $run)}")
  local id
  status=0
  # stdout is the new snapshot's id; the summary goes to stderr, into the job's log.
  id=$(pc backup "${args[@]}") || status=$?
  # 3: saved, but some files could not be read (listed above); the snapshot is there.
  [ "$status" = 0 ] || [ "$status" = 3 ] || exit "$status"
  [[ "$id" =~ ^[0-9a-f]{64}$ ]] || die "backup printed no snapshot id: $id"
  output snapshot-id "$id"
  return "$status"
}

prune() {
  local rules=()
  [ -z "${PC_KEEP_LAST:-}" ] || rules+=(--keep-last "$PC_KEEP_LAST")
  [ -z "${PC_KEEP_DAILY:-}" ] || rules+=(--keep-daily "$PC_KEEP_DAILY")
  [ -z "${PC_KEEP_WEEKLY:-}" ] || rules+=(--keep-weekly "$PC_KEEP_WEEKLY")
  [ -z "${PC_KEEP_MONTHLY:-}" ] || rules+=(--keep-monthly "$PC_KEEP_MONTHLY")
  if [ ${#rules[@]} = 0 ]; then
    echo "projectclone action: no keep-* input: nothing is forgotten"
    output forgotten 0
    return 0
  fi
  local out
  out=$(pc forget --json --prune "${rules[@]}")
  output forgotten "$(printf '%s\n' "$out" | sed -n 's/^  "forgotten": \([0-9]*\),\{0,1\}$/\1/p')"
}

case "${1:-}" in
  install) install ;;
  backup) backup ;;
  prune) prune ;;
  *) die "usage: ci/action.sh install|backup|prune" ;;
esac
