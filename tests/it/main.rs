//! End-to-end tests of the `projectclone` binary against the CLI contract and the
//! guarantees README states. One integration binary, one module per topic.
//!
//! Every test runs in its own temporary directory with its own repository, cache, HOME
//! and XDG directories; tests run as root (devices, owners) and without a terminal.

mod util;

mod append_only;
mod backup;
mod beyond;
mod cli;
mod compat;
mod completions;
mod config;
mod config_export;
mod conformance;
mod copy_lock;
mod crash;
mod damage;
mod dedup;
mod edges;
mod exit_codes;
mod export;
mod export_age;
mod export_flags;
mod faults;
mod findings;
mod fuse;
mod git;
mod help;
mod hooks;
mod hostile;
mod hostile_storage;
mod import;
mod interactive;
mod keys_insecure;
mod logs;
mod mount;
mod oldcli;
mod oldcli_age;
mod parity;
mod plugins;
mod progress;
mod prune;
mod python;
mod quiet_stop;
mod release;
mod remote;
mod repair;
mod restore;
mod resume;
mod rolling;
mod roundtrip;
mod s3_init;
mod schedule;
mod security;
mod select;
mod servers;
mod watch;
