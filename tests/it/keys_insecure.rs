//! A repository made with `init --insecure-no-password` gets a password: `key add`, then
//! `key remove` of the password-less key. Afterwards only the password opens it, and this
//! client's pin knows the change was its own (no tampering reported, and a password-less
//! key that turns up again is not used without the flag).

use std::fs;

use crate::util::*;

const NEW_PASSWORD: &str = "a brand new password";

/// The binary without any password, on the test's repository and cache.
fn no_pw(env: &Env) -> assert_cmd::Command {
    let mut c = env.bare();
    c.arg("-r").arg(env.repo()).arg("--cache-dir").arg(env.cache());
    c
}

/// The key files as `key list --json` gives them: (id, has a password).
fn keys(cmd: &mut assert_cmd::Command) -> Vec<(String, bool)> {
    let list = run(cmd.args(["--json", "key", "list"])).success().json();
    list.as_array()
        .expect("an array of keys")
        .iter()
        .map(|k| (k["id"].as_str().expect("id").to_string(), !k["kdf"].is_null()))
        .collect()
}

fn insecure_repo_with_snapshot(env: &Env) -> (std::path::PathBuf, String) {
    run(no_pw(env).args(["init", "--insecure-no-password"])).success();
    let src = env.path("src");
    write(src.join("a/b.txt"), b"secret source\n");
    write(src.join("c.bin"), [7u8; 5000]);
    age_tree(&src);
    let id = run(no_pw(env).arg("backup").arg(&src)).success().snapshot_id();
    (src, id)
}

#[test]
fn insecure_repository_gets_a_password_and_loses_its_clear_key() {
    let env = Env::new();
    let (src, id) = insecure_repo_with_snapshot(&env);
    let before = keys(&mut no_pw(&env));
    assert_eq!(before.len(), 1);
    let (clear, has_pw) = before[0].clone();
    assert!(!has_pw, "init --insecure-no-password makes a password-less key");
    let clear_bytes = fs::read(env.repo().join("keys").join(&clear)).expect("key file");

    // Add a key with a password: the repository opens without one as before.
    run(no_pw(&env)
        .env("PROJECTCLONE_NEW_PASSWORD", NEW_PASSWORD)
        .args(["key", "add"]))
    .success();
    let both = keys(&mut no_pw(&env));
    assert_eq!(both.len(), 2, "{both:?}");
    let (pw_key, _) = both.iter().find(|k| k.1).expect("a key with a password").clone();

    // Remove the clear key, from the session it opened (by a unique prefix).
    let out = run(no_pw(&env).args(["key", "remove", &clear[..12]])).success();
    assert!(out.stderr.contains("removed: "), "{}", out.stderr);
    assert!(out.stderr.contains("opens only with a password"), "{}", out.stderr);
    assert!(!env.repo().join("keys").join(&clear).exists());
    assert!(env.repo().join("keys").join(&pw_key).exists());

    // The clear key no longer opens it: with the flag the error says why; without a
    // password, it asks for one (exit 1, naming the options).
    let out = run(no_pw(&env).args(["--insecure-no-password", "snapshots"])).failure();
    assert!(
        out.stderr.contains("no key that opens without a password"),
        "{}",
        out.stderr
    );
    let out = run(no_pw(&env).arg("snapshots")).failure();
    assert!(out.stderr.contains("no password given"), "{}", out.stderr);
    // A wrong password is exit 12.
    run(no_pw(&env).env("PROJECTCLONE_PASSWORD", "not it").arg("snapshots")).code(12);

    // The password opens it, with no trust warning or notice: the pin was updated by the
    // command that made the change.
    let with_pw = || {
        let mut c = no_pw(&env);
        c.env("PROJECTCLONE_PASSWORD", NEW_PASSWORD);
        c
    };
    let out = run(with_pw().args(["--json", "snapshots"])).success();
    assert_eq!(out.json()[0]["id"], id.as_str());
    assert!(out.stderr.is_empty(), "no notice expected, got: {}", out.stderr);
    let trust = run(with_pw().args(["--json", "trust"])).success().json();
    assert_eq!(trust["pin"]["insecure"], false, "{trust}");
    let target = env.path("restored");
    run(with_pw().args(["restore", &id, "--target"]).arg(&target)).success();
    assert_trees_equal(&src, &target, true);
    run(with_pw().args(["check", "--read-data"])).success();
    assert_eq!(keys(&mut with_pw()), vec![(pw_key, true)]);

    // The removed clear key put back (by anyone who can write to the storage) does not
    // open the repository for this client without a password.
    fs::write(env.repo().join("keys").join(&clear), &clear_bytes).expect("put the key back");
    let out = run(no_pw(&env).arg("snapshots")).failure();
    assert!(out.stderr.contains("no password given"), "{}", out.stderr);
}

#[test]
fn insecure_repository_key_add_from_file_and_passwd() {
    let env = Env::new();
    let (_src, id) = insecure_repo_with_snapshot(&env);
    // --new-password-file, with the explicit flag for the open.
    let pw_file = env.path("new.pw");
    fs::write(&pw_file, format!("{NEW_PASSWORD}\n")).expect("write");
    run(no_pw(&env)
        .args(["--insecure-no-password", "key", "add", "--new-password-file"])
        .arg(&pw_file))
    .success();
    // `key remove` of the only key with a password stays possible (the clear key is left),
    // but the clear key itself cannot go while it is the only key.
    let ks = keys(&mut no_pw(&env));
    let (clear, _) = ks.iter().find(|k| !k.1).expect("clear key").clone();
    let (pw_key, _) = ks.iter().find(|k| k.1).expect("password key").clone();
    run(no_pw(&env).args(["key", "remove", &pw_key])).success();
    let out = run(no_pw(&env).args(["key", "remove", &clear])).failure();
    assert!(out.stderr.contains("opening the repository now"), "{}", out.stderr);
    assert!(env.repo().join("keys").join(&clear).exists());

    // `key passwd` replaces the clear key by one with a password in one step.
    run(no_pw(&env)
        .env("PROJECTCLONE_NEW_PASSWORD", NEW_PASSWORD)
        .args(["key", "passwd"]))
    .success();
    assert!(!env.repo().join("keys").join(&clear).exists());
    run(no_pw(&env).args(["--insecure-no-password", "snapshots"])).failure();
    let out = run(no_pw(&env)
        .env("PROJECTCLONE_PASSWORD", NEW_PASSWORD)
        .args(["--json", "snapshots"]))
    .success();
    assert_eq!(out.json()[0]["id"], id.as_str());
    assert!(out.stderr.is_empty(), "no notice expected, got: {}", out.stderr);
}
