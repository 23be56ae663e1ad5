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

/// Notifier plugins: `[[notify]] plugin = "NAME"` hands each event to
/// `projectclone-notify-NAME`; here the example plugin, which appends it to a log.
#[test]
fn a_notifier_plugin_gets_each_event_and_its_failure_is_only_a_warning() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("a"), b"a");
    let log = env.path("notify.log");
    let bin = env.path("bin");
    let failing = bin.join("projectclone-notify-failing");
    write(
        &failing,
        "#!/bin/sh\ncat >/dev/null; echo 'error the pager service said no'; exit 1\n",
    );
    std::fs::set_permissions(&failing, std::fs::Permissions::from_mode(0o755)).unwrap();
    user_file(
        &env,
        "[[notify]]\nplugin = \"log\"\n\n[[notify]]\nplugin = \"failing\"\nretries = 1\n\n[[notify]]\nplugin = \"missing\"\n",
    );
    let path = path_with(&[&plugins_dir(), &bin]);
    let mut c = env.cmd();
    c.env("PATH", &path)
        .env("PROJECTCLONE_NOTIFY_LOG", &log)
        .arg("backup")
        .arg(&src);
    let out = run(&mut c);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let id = out.stdout.trim().to_string();
    assert!(
        out.stderr
            .contains("projectclone-notify-failing could not deliver the event (the pager service said no"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("tried 2 times"), "{}", out.stderr);
    assert!(
        out.stderr.contains("no program projectclone-notify-missing on PATH"),
        "{}",
        out.stderr
    );
    let events: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["event"], "success");
    assert_eq!(events[0]["command"], "backup");
    assert_eq!(events[0]["snapshot_id"], id.as_str());
    assert!(
        events[0]["summary"].as_str().unwrap().contains("succeeded"),
        "{}",
        events[0]
    );
    // A failed command is told too, with its exit code.
    let mut c = env.cmd();
    c.env("PATH", &path)
        .env("PROJECTCLONE_NOTIFY_LOG", &log)
        .env("PROJECTCLONE_PASSWORD", "wrong")
        .arg("check");
    assert_eq!(run(&mut c).code, 12);
    let last: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&log).unwrap().lines().last().unwrap()).unwrap();
    assert_eq!(last["event"], "failure");
    assert_eq!(last["exit_code"], 12);
}

#[test]
fn a_notify_entry_names_an_endpoint_or_a_plugin() {
    let env = Env::with_repo();
    for (text, want) in [
        (
            "[[notify]]\nplugin = \"log\"\nurl = \"http://x\"\n",
            "give url or plugin, not both",
        ),
        (
            "[[notify]]\non = [\"failure\"]\n",
            "give url (an http:// or https:// endpoint) or plugin",
        ),
        (
            "[[notify]]\nplugin = \"Log Book\"\n",
            "a plugin name is lowercase letters",
        ),
        (
            "[[notify]]\nplugin = \"log\"\nformat = \"slack\"\n",
            "a plugin gets the json event",
        ),
    ] {
        user_file(&env, text);
        let out = run(env.cmd().arg("snapshots"));
        assert_ne!(out.code, 0, "{text}");
        assert!(out.stderr.contains(want), "{text}: {}", out.stderr);
    }
}
