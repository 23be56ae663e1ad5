#!/usr/bin/env bash
# Build and run the fuzz targets with libFuzzer's coverage instrumentation on the stable
# toolchain (the flags `cargo fuzz build --sanitizer none` passes, without sanitizers).
#   fuzz/stable.sh build                 build every target into fuzz/target/stable
#   fuzz/stable.sh run TARGET [SECONDS]  build, then fuzz TARGET (default 60 s)
# New inputs go to fuzz/target/stable/corpus/TARGET, crashes to fuzz/artifacts/TARGET/;
# the committed fuzz/corpus/TARGET is read, never written.
set -euo pipefail
cd "$(dirname "$0")"
triple="$(rustc -vV | sed -n 's/^host: //p')"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cllvm-args=-sanitizer-coverage-stack-depth \
--cfg fuzzing -Cdebug-assertions -Coverflow-checks"
# --target keeps build scripts and proc macros uninstrumented.
cargo build --release --bins --target "$triple" --target-dir target/stable
case "${1:-build}" in
  build) ;;
  run)
    t="${2:?target name}"
    mkdir -p "target/stable/corpus/$t" "artifacts/$t"
    exec "target/stable/$triple/release/$t" -max_total_time="${3:-60}" -artifact_prefix="artifacts/$t/" \
      "target/stable/corpus/$t" "corpus/$t"
    ;;
  *) echo "usage: $0 build | run TARGET [SECONDS]" >&2; exit 2 ;;
esac
