//! Fuzz targets for projectclone's decoders of repository bytes (see `README.md`).
//!
//! The target bodies live in `targets.rs` and the seed corpus generator in `seeds.rs`;
//! the main package's `tests/fuzz_corpus.rs` includes both (`#[path]`) to replay the
//! corpora as ordinary tests on the stable toolchain.

pub mod seeds;
pub mod targets;
