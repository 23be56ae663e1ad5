//! Plugin stores (issue 20, item 3): `-r NAME:ARG` runs `projectclone-backend-NAME ARG` from
//! `PATH` and talks format-spec §19's "Plugin stores" protocol with it. Here through the
//! built binary with the example plugin of `plugins/` (its conformance run is
//! `conformance::plugin_store_conforms`), and with plugins that are missing or misbehave.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::util::*;

fn plugins_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins")
}

/// `PATH` with `dirs` in front.
fn path_with(dirs: &[&Path]) -> String {
    let mut v: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    v.push(std::env::var("PATH").unwrap());
    v.join(":")
}

#[test]
fn a_plugin_location_holds_a_repository_that_backs_up_restores_checks_and_prunes() {
    let env = Env::new();
    let src = env.path("src");
    build_nasty(&src);
    write(src.join("big.bin"), random_bytes(11, 3_000_000));
    let store = env.path("store");
    let loc = format!("dir:{}", store.display());
    let path = path_with(&[&plugins_dir()]);
    let pc = |args: &[&str]| {
        let mut c = env.bare();
        c.env("PATH", &path)
            .env("PROJECTCLONE_PASSWORD", PASSWORD)
            .arg("-r")
            .arg(&loc)
            .args(args);
        run(&mut c)
    };
    let out = pc(&["init"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // The plugin stored the repository's objects in its folder, in the usual layout.
    assert!(store.join("config").is_file() && store.join("keys").is_dir());
    let first = pc(&["backup", src.to_str().unwrap()]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    write(src.join("later.txt"), b"second backup");
    let second = pc(&["backup", src.to_str().unwrap()]);
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert!(!files_under(&store.join("packs")).is_empty());
    let target = env.path("restored");
    let out = pc(&["restore", first.stdout.trim(), "--target", target.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    std::fs::remove_file(src.join("later.txt")).unwrap();
    assert_trees_equal(&src, &target, false);
    let out = pc(&["check", "--read-data"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let out = pc(&["forget", "--keep-last", "1", "--prune"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = pc(&["snapshots", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["id"], second.stdout.trim());
    let out = pc(&["check", "--read-data"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
}

#[test]
fn a_name_with_no_plugin_on_path_is_a_usage_error_that_names_the_program() {
    let env = Env::new();
    let mut c = env.bare();
    c.env("PROJECTCLONE_PASSWORD", PASSWORD)
        .args(["-r", "nosuch:somewhere", "snapshots"]);
    let out = run(&mut c);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("projectclone-backend-nosuch on PATH"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}

/// A plugin that answers the handshake and then breaks the protocol, or exits: the command
/// fails with an error naming the plugin (tried again as transient first), never a panic
/// and never a repository created from nonsense.
#[test]
fn a_plugin_that_breaks_the_protocol_fails_the_command_clearly() {
    let env = Env::new();
    let bin = env.path("bin");
    for (name, body) in [
        (
            "garbage",
            "read l; echo 'ok 1'; while read cmd rest; do case $cmd in size) echo 'size 10';; \
             *) echo 'data 99999999999';; esac; done",
        ),
        ("quitter", "read l; echo 'ok 1'; read l; exit 3"),
        ("oldproto", "read l; echo 'ok 0'"),
    ] {
        let p = bin.join(format!("projectclone-backend-{name}"));
        write(&p, format!("#!/bin/sh\n{body}\n"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = path_with(&[&bin]);
    for (name, want) in [
        ("garbage", "sent 99999999999 bytes where at most 10 were asked for"),
        ("quitter", "exited without answering"),
        ("oldproto", "does not speak protocol 1"),
    ] {
        let mut c = env.bare();
        c.env("PATH", &path)
            .env("PROJECTCLONE_PASSWORD", PASSWORD)
            .env("PROJECTCLONE_STORAGE_RETRY_DELAY", "10ms")
            .env("PROJECTCLONE_STORAGE_TRIES", "2")
            .args(["-r", &format!("{name}:x"), "snapshots"]);
        let out = run(&mut c);
        assert_ne!(out.code, 0, "{name}: {}", out.stdout);
        assert!(out.stderr.contains(want), "{name}: {}", out.stderr);
        assert!(!out.stderr.contains("panicked"), "{name}: {}", out.stderr);
    }
}
