//! Hostile storage against what a client trusts: planted key files and configs, key files
//! that unwrap but open nothing, snapshots deleted or put back behind the client's back,
//! and objects sized or typed to exhaust a client. Each test replays an attack from the
//! security review through the binary; the attacker writes to the repository's files
//! directly, as anyone who can write to the storage can.

use std::fs;
use std::path::{Path, PathBuf};

use projectclone::crypto::{KdfParams, Keys};
use projectclone::format::{self, Config, Kind};
use projectclone::repo::make_key_file;

use crate::util::*;

/// The repository id, read from `config` as anyone can (it is in clear).
fn repo_id(env: &Env) -> [u8; 32] {
    format::config_repo_id(&fs::read(env.repo().join("config")).unwrap()).unwrap()
}

/// What an attacker who can write to the storage plants: a key file of their own (no
/// password, or `password`) and a `config` sealed under their master key, same repository
/// id. Returns the attacker's keys.
fn plant_key_and_config(env: &Env, password: Option<&[u8]>, replace_config: bool) -> Keys {
    let (keys, kf) = key_file_named_before(env, password, &own_key(env));
    let id = repo_id(env);
    let name = blake3::hash(&kf).to_hex().to_string();
    fs::write(env.repo().join("keys").join(&name), &kf).unwrap();
    if replace_config {
        let cfg = Config {
            repo_id: id,
            chunker: Default::default(),
            pack_target: 16 << 20,
            created_unix_ns: 0,
        };
        fs::remove_file(env.repo().join("config")).unwrap();
        fs::write(env.repo().join("config"), format::encode_config(&cfg, &keys.cipher())).unwrap();
    }
    keys
}

/// A key file for a new master key whose name sorts before `before` (the repository's own
/// key file), so a client trying key files in name order meets it first.
fn key_file_named_before(env: &Env, password: Option<&[u8]>, before: &str) -> (Keys, Vec<u8>) {
    loop {
        let keys = Keys::generate();
        let kdf = KdfParams {
            m_cost: 64,
            t_cost: 1,
            p_cost: 1,
        };
        let kf = make_key_file(&repo_id(env), &keys, password, kdf).unwrap();
        if blake3::hash(&kf).to_hex().as_str() < before {
            return (keys, kf);
        }
    }
}

/// The name of the repository's (only) key file; any name when it has none left.
fn own_key(env: &Env) -> String {
    let keys = files_under(&env.repo().join("keys"));
    assert!(keys.len() <= 1);
    keys.first()
        .map(|k| k.file_name().unwrap().to_string_lossy().into_owned())
        .unwrap_or_else(|| "f".repeat(64))
}

/// `env.cmd()` as a client that never opened the repository (its own state folder).
fn fresh_client(env: &Env, name: &str) -> assert_cmd::Command {
    let mut c = env.cmd();
    c.env("XDG_STATE_HOME", env.path(name));
    c
}

fn snapshot_ids(env: &Env) -> Vec<String> {
    env.snapshots()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_planted_password_less_key_and_config_do_not_take_a_password_repository_over() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("a"), b"mine");
    let mine = env.backup([&src]);
    plant_key_and_config(&env, None, true);
    let before = fingerprint(&env.repo());
    // With the right password: refused, nothing written under the attacker's key.
    let out = env.run(["snapshots"]).failure();
    assert!(out.stderr.contains("config"), "{}", out.stderr);
    let out = env.run(["backup", src.to_str().unwrap()]).failure();
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    assert_eq!(
        fingerprint(&env.repo()),
        before,
        "something was written under a planted key"
    );
    // Without a password (no --insecure-no-password): a password is asked for, never
    // the planted key used.
    let out = run(env
        .bare()
        .arg("-r")
        .arg(env.repo())
        .arg("--cache-dir")
        .arg(env.cache())
        .arg("snapshots"))
    .failure();
    assert!(out.stderr.contains("password"), "{}", out.stderr);
    let _ = mine;
}

#[test]
fn a_password_is_never_accepted_by_a_password_less_key() {
    let env = Env::new();
    let bare = || {
        let mut c = env.bare();
        c.arg("-r").arg(env.repo()).arg("--cache-dir").arg(env.cache());
        c
    };
    run(bare().args(["init", "--insecure-no-password"])).success();
    // A password given for a repository that opens only without one: an error, never a
    // silent success (today's scripts set PROJECTCLONE_PASSWORD globally).
    let other_state = env.path("other-state");
    let out = run(bare()
        .env("XDG_STATE_HOME", &other_state)
        .env("PROJECTCLONE_PASSWORD", "anything")
        .arg("snapshots"))
    .failure();
    assert!(out.stderr.contains("--insecure-no-password"), "{}", out.stderr);
    // This client made it without a password: it remembers, no flag needed.
    run(bare().arg("snapshots")).success();
    // Another client (fresh state) needs the flag.
    let out = run(bare().env("XDG_STATE_HOME", &other_state).arg("snapshots")).failure();
    assert!(out.stderr.contains("--insecure-no-password"), "{}", out.stderr);
    run(bare()
        .env("XDG_STATE_HOME", &other_state)
        .args(["--insecure-no-password", "snapshots"]))
    .success();
}

/// A password-less repository whose key and config are replaced by an attacker's (also
/// without a password, same repository id): the client pinned the master key's check
/// value and the config's digest, and refuses until told the change is deliberate.
#[test]
fn a_replaced_key_and_config_are_refused_by_the_pin() {
    let env = Env::new();
    let bare = || {
        let mut c = env.bare();
        c.arg("-r").arg(env.repo()).arg("--cache-dir").arg(env.cache());
        c
    };
    let out = run(bare().args(["init", "--insecure-no-password"])).success();
    let _ = out;
    let src = env.path("src");
    write(src.join("a"), b"mine");
    let first = run(bare().arg("snapshots")).success();
    assert!(
        !first.stderr.contains("trusting"),
        "the pin is made at init: {}",
        first.stderr
    );
    run(bare().arg("backup").arg(&src)).success();
    // The attacker removes every key file and plants their own key and config.
    for k in files_under(&env.repo().join("keys")) {
        fs::remove_file(k).unwrap();
    }
    plant_key_and_config(&env, None, true);
    fs::remove_dir_all(env.cache()).unwrap();
    let out = run(bare().arg("snapshots")).failure();
    assert!(
        out.stderr.contains("master key is not the one") && out.stderr.contains("trust accept"),
        "{}",
        out.stderr
    );
    let out = run(bare().args(["backup"]).arg(&src)).failure();
    assert!(out.stderr.contains("master key is not the one"), "{}", out.stderr);
    // A client that never saw it trusts it, and says so.
    let out = run(bare()
        .env("XDG_STATE_HOME", env.path("fresh-state"))
        .args(["--insecure-no-password", "snapshots"]))
    .success();
    assert!(out.stderr.contains("trusting repository"), "{}", out.stderr);
    // Accepted deliberately, it opens again.
    run(bare().args(["trust", "accept"])).success();
    run(bare().arg("snapshots")).success();
}

/// A key file that unwraps with the user's password but holds another master key (copied
/// from another repository, or planted by someone who knows the password) is named and
/// skipped; the real key still opens the repository.
#[test]
fn a_key_file_that_unwraps_but_opens_no_config_does_not_lock_the_user_out() {
    let env = Env::with_repo();
    plant_key_and_config(&env, Some(PASSWORD.as_bytes()), false);
    let out = run(fresh_client(&env, "fresh").arg("snapshots")).success();
    assert!(
        out.stderr.contains("does not authenticate under the key it holds"),
        "{}",
        out.stderr
    );
}

#[test]
fn key_files_too_large_misnamed_or_too_many_are_skipped() {
    let env = Env::with_repo();
    let keys = env.repo().join("keys");
    let real = files_under(&keys).remove(0);
    // Too large for a key file, and a valid key file under a name that is not the hash of
    // its bytes: skipped and named. Both names sort before the real key's, whatever its
    // hash, so a client meets them before it finds the key that opens.
    let big = vec![7u8; 1 << 20];
    fs::write(keys.join(format!("{}1", "0".repeat(63))), &big).unwrap();
    fs::copy(&real, keys.join("0".repeat(64))).unwrap();
    let out = run(fresh_client(&env, "fresh1").arg("snapshots")).success();
    assert!(out.stderr.contains("not the hash of its bytes"), "{}", out.stderr);
    assert!(out.stderr.contains("larger than a key file"), "{}", out.stderr);
    // Forty key files of other passwords, all named before the real one: at most 32 are
    // tried, so a client that never opened the repository gives up (and says why)
    // instead of deriving forty keys...
    let own = real.file_name().unwrap().to_string_lossy().into_owned();
    for _ in 0..40 {
        let (_, kf) = key_file_named_before(&env, Some(b"another password"), &own);
        fs::write(keys.join(blake3::hash(&kf).to_hex().as_str()), kf).unwrap();
    }
    let out = run(fresh_client(&env, "fresh2").arg("snapshots")).failure();
    assert!(out.stderr.contains("not tried"), "{}", out.stderr);
    // ...while this client tries the key that worked last time first.
    env.run(["snapshots"]).success();
    let _ = real;
}

#[test]
fn a_config_that_is_a_symlink_or_huge_is_refused_before_reading() {
    for (what, make) in [
        (
            "symlink to /dev/zero",
            Box::new(|p: &Path| std::os::unix::fs::symlink("/dev/zero", p).unwrap()) as Box<dyn Fn(&Path)>,
        ),
        (
            "fifo",
            Box::new(|p: &Path| {
                rustix::fs::mknodat(
                    rustix::fs::CWD,
                    p,
                    rustix::fs::FileType::Fifo,
                    rustix::fs::Mode::from_raw_mode(0o600),
                    0,
                )
                .unwrap()
            }),
        ),
        (
            "1 GiB file",
            Box::new(|p: &Path| fs::File::create(p).unwrap().set_len(1 << 30).unwrap()),
        ),
    ] {
        let env = Env::with_repo();
        let cfg: PathBuf = env.repo().join("config");
        fs::remove_file(&cfg).unwrap();
        make(&cfg);
        let out = env.run(["snapshots"]).failure();
        assert!(!out.stderr.contains("panicked"), "{what}: {}", out.stderr);
        assert!(out.stderr.contains("config"), "{what}: {}", out.stderr);
    }
}

/// Snapshots deleted behind the client's back, or put back after they were forgotten, are
/// reported on every command and by `check`; prune keeps what they referenced until the
/// user acknowledges the removal.
#[test]
fn snapshots_deleted_or_put_back_behind_the_clients_back_are_reported() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("big.bin"), random_bytes(1, 1_500_000));
    age_tree(&src);
    let s1 = env.backup([&src]);
    fs::remove_file(src.join("big.bin")).unwrap();
    write(src.join("small"), b"small");
    let s2 = env.backup([&src]);
    // Deleted behind our back.
    let s1_file = env.repo().join("snapshots").join(&s1);
    let s1_bytes = fs::read(&s1_file).unwrap();
    fs::remove_file(&s1_file).unwrap();
    let out = env.run(["snapshots"]).success();
    assert!(
        out.stderr.contains("vanished") && out.stderr.contains(&s1[..8]),
        "{}",
        out.stderr
    );
    let out = env.run(["-q", "ls", "latest"]).success();
    assert!(out.stderr.contains("vanished"), "reported even with -q: {}", out.stderr);
    let c = env.run(["--json", "check"]).failure().json();
    assert!(c["errors"].to_string().contains("vanished"), "{c}");
    // Prune keeps what it referenced.
    let packs = files_under(&env.repo().join("packs"));
    env.run(["prune"]).success();
    assert_eq!(
        files_under(&env.repo().join("packs")),
        packs,
        "prune freed a vanished snapshot's data"
    );
    // Acknowledged: no more reports, and prune frees the space.
    env.run(["forget", "--vanished"]).success();
    let out = env.run(["snapshots"]).success();
    assert!(!out.stderr.contains("vanished"), "{}", out.stderr);
    env.run(["prune"]).success();
    assert!(files_under(&env.repo().join("packs")).len() < packs.len());
    env.run(["check", "--read-data"]).success();

    // Forgotten on purpose: a tombstone, and no report.
    write(src.join("c"), b"c");
    let s3 = env.backup([&src]);
    env.run(["forget", &s3]).success();
    assert!(!snapshot_ids(&env).contains(&s3));
    let out = env.run(["snapshots"]).success();
    assert!(!out.stderr.contains("SECURITY"), "{}", out.stderr);
    // Put back (an old repository state) without its tombstone: reported.
    let tombstones: Vec<PathBuf> = files_under(&env.repo().join("snapshots"))
        .into_iter()
        .filter(|p| fs::read(p).unwrap()[4] == Kind::Tombstone as u8)
        .collect();
    assert_eq!(
        tombstones.len(),
        2,
        "forget --vanished and forget each left a tombstone"
    );
    for t in &tombstones {
        fs::remove_file(t).unwrap();
    }
    fs::write(&s1_file, &s1_bytes).unwrap();
    let out = env.run(["snapshots"]).success();
    assert!(out.stderr.contains("listed again"), "{}", out.stderr);
    let _ = s2;
}

/// A damaged snapshot object is still there: reported as unreadable, never as vanished. A
/// damaged tombstone leaves its snapshot looking vanished: the alert says that an object of
/// `snapshots/` could not be read.
#[test]
fn damaged_snapshots_and_tombstones_are_not_taken_for_deletions() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("a"), b"a");
    let s1 = env.backup([&src]);
    write(src.join("b"), b"b");
    let s2 = env.backup([&src]);
    // Damage s1's object (this client has seen s1, so a vanished alert would fire).
    let s1_file = env.repo().join("snapshots").join(&s1);
    let mut bytes = fs::read(&s1_file).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0x40;
    fs::write(&s1_file, &bytes).unwrap();
    fs::remove_dir_all(env.cache()).unwrap();
    let out = env.run(["snapshots"]).success();
    assert!(!out.stderr.contains("vanished"), "{}", out.stderr);
    let c = env.run(["--json", "check"]).failure().json();
    assert!(c["errors"].to_string().contains(&s1[..8]), "{c}");
    assert!(!c["errors"].to_string().contains("vanished"), "{c}");

    // Forget s2, then damage its tombstone: s2 now looks deleted without a tombstone.
    env.run(["forget", &s2]).success();
    let tomb = files_under(&env.repo().join("snapshots"))
        .into_iter()
        .find(|p| fs::read(p).unwrap()[4] == Kind::Tombstone as u8)
        .expect("a tombstone");
    let mut t = fs::read(&tomb).unwrap();
    let n = t.len();
    t[n - 3] ^= 0x40;
    fs::write(&tomb, &t).unwrap();
    let out = fresh_client_with_seen(&env, &[&s2]);
    assert!(out.contains("vanished") && out.contains("could not be read"), "{out}");
}

/// The stderr of `snapshots` run by a client whose record says it saw `seen` (a copy of
/// this client's state, whose cache is dropped so every object is read again).
fn fresh_client_with_seen(env: &Env, seen: &[&str]) -> String {
    let state = env.path("xdg-state");
    let raw = files_under(&state)
        .into_iter()
        .find(|p| p.ends_with("snapshots.json"))
        .expect("this client's record of snapshots seen");
    let text = fs::read_to_string(&raw).unwrap();
    for s in seen {
        assert!(text.contains(s), "{s} not in {text}");
    }
    // The record says "forgotten" for s2 now (this client wrote the tombstone): make it
    // say "present", as a client that saw s2 but not its forget would have it.
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut v = v;
    for s in seen {
        v[*s]["state"] = serde_json::json!("present");
    }
    fs::write(&raw, serde_json::to_vec(&v).unwrap()).unwrap();
    fs::remove_dir_all(env.cache()).unwrap();
    env.run(["snapshots"]).success().stderr
}

/// A forget killed between its tombstone and its delete leaves the snapshot object: every
/// reader treats it as forgotten, and prune deletes it.
#[test]
fn prune_deletes_snapshot_objects_an_interrupted_forget_left() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("a"), b"a");
    let s1 = env.backup([&src]);
    write(src.join("b"), b"b");
    env.backup([&src]);
    let s1_file = env.repo().join("snapshots").join(&s1);
    let bytes = fs::read(&s1_file).unwrap();
    env.run(["forget", &s1]).success();
    fs::write(&s1_file, &bytes).unwrap();
    let out = env.run(["snapshots"]).success();
    assert!(!out.stdout.contains(&s1[..8]), "{}", out.stdout);
    assert!(!out.stderr.contains("SECURITY"), "{}", out.stderr);
    let p = env.run(["--json", "prune", "--dry-run"]).success().json();
    assert_eq!(p["leftover_snapshots"], serde_json::json!([s1]), "{p}");
    assert!(s1_file.exists());
    let text = env.run(["prune"]).success();
    assert!(
        text.stdout.contains("an interrupted forget left behind"),
        "{}",
        text.stdout
    );
    assert!(!s1_file.exists());
    env.run(["check", "--read-data"]).success();
}

#[test]
fn forget_vanished_takes_no_rules_and_insecure_no_password_says_what_is_wrong() {
    let env = Env::with_repo();
    for extra in [&["--keep-last", "1"][..], &["--prune"], &["--keep-within", "1d"]] {
        let mut args = vec!["forget", "--vanished"];
        args.extend_from_slice(extra);
        let out = env.run(args).code(2);
        assert!(out.stderr.contains("cannot be used with"), "{}", out.stderr);
    }
    let out = run(env
        .bare()
        .arg("-r")
        .arg(env.repo())
        .arg("--cache-dir")
        .arg(env.cache())
        .args(["--insecure-no-password", "snapshots"]))
    .failure();
    assert!(
        out.stderr.contains("no key that opens without a password") && out.stderr.contains("leave the flag out"),
        "{}",
        out.stderr
    );
}

/// Lock files and condemned records are read with a size bound: a huge one planted in the
/// store is refused without being read into memory.
#[test]
fn huge_lock_and_condemned_objects_are_refused_unread() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("a"), b"a");
    env.backup([&src]);
    let huge = vec![0u8; 300 * 1024 * 1024];
    let name = "ab".repeat(32);
    fs::create_dir_all(env.repo().join("locks")).unwrap();
    fs::write(env.repo().join("locks").join(&name), &huge[..1 << 20]).unwrap();
    // A huge lock is skipped (it opens nothing): commands still run.
    env.run(["backup", src.to_str().unwrap()]).success();
    fs::remove_file(env.repo().join("locks").join(&name)).unwrap();
    fs::create_dir_all(env.repo().join("condemned")).unwrap();
    fs::write(env.repo().join("condemned").join(&name), &huge).unwrap();
    let out = env.run(["check"]).failure();
    assert!(
        out.stderr.contains("more than the") || out.stdout.contains("more than the"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}

/// A snapshot deleted behind the back of every client, one that never saw it included, is
/// found by `check` through the parent its successor names; `forget --vanished` acknowledges
/// it with a zeroed tombstone, and `check` is clean again.
#[test]
fn a_parent_deleted_behind_every_clients_back_fails_check_until_acknowledged() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("a"), b"a");
    let s1 = env.backup([&src]);
    write(src.join("b"), b"b");
    let s2 = env.backup([&src]);
    fs::remove_file(env.repo().join("snapshots").join(&s1)).unwrap();

    let c = run(fresh_client(&env, "fresh").args(["--json", "check"]))
        .failure()
        .json();
    let errors = c["errors"].to_string();
    assert!(
        errors.contains(&s1) && errors.contains(&s2) && errors.contains("without a tombstone"),
        "{c}"
    );
    let out = run(fresh_client(&env, "fresh").args(["forget", "--vanished", "--dry-run"])).success();
    assert!(
        out.stdout.contains(&s1[..8]) && out.stdout.contains("parent"),
        "{}",
        out.stdout
    );
    run(fresh_client(&env, "fresh").args(["check"])).failure();
    let out = run(fresh_client(&env, "fresh").args(["--json", "forget", "--vanished"])).success();
    assert_eq!(out.json()["acknowledged"], serde_json::json!([s1]), "{}", out.stdout);
    run(fresh_client(&env, "fresh").args(["check"])).success();
    // The client that saw s1 finds the tombstone too.
    env.run(["check"]).success();
}

/// The chain (format-spec §10): every snapshot records the heads it saw, whatever their
/// host or paths, and a forgotten snapshot's tombstone keeps that record. So a snapshot of
/// another project deleted behind every client's back is found by a client that never saw
/// it, and so is one that only a forgotten snapshot had seen. The first break is reported
/// first: the one whose witness is oldest.
#[test]
fn the_chain_finds_snapshots_of_any_project_deleted_behind_every_clients_back() {
    let env = Env::with_repo();
    let (a, b, c) = (env.path("a"), env.path("b"), env.path("c"));
    for d in [&a, &b, &c] {
        write(d.join("f"), d.to_string_lossy().as_bytes());
    }
    let s1 = env.backup([&a]);
    let s2 = env.backup([&b]);
    let s3 = env.backup([&c]);
    let snaps = env.run(["--json", "snapshots"]).success().json();
    let seen = |id: &str| {
        snaps
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .map(|s| s["seen"].clone())
            .unwrap()
    };
    assert_eq!(seen(&s1), serde_json::json!([]));
    assert_eq!(seen(&s2), serde_json::json!([s1]));
    assert_eq!(seen(&s3), serde_json::json!([s2]));
    // None of them is another's parent: only the chain links them.
    assert!(
        snaps.as_array().unwrap().iter().all(|s| s["parent"].is_null()),
        "{snaps}"
    );

    // s2 is forgotten on purpose; its tombstone keeps what it saw (s1). Then s1 is
    // deleted behind everyone's back.
    env.run(["forget", &s2]).success();
    fs::remove_file(env.repo().join("snapshots").join(&s1)).unwrap();
    let c1 = run(fresh_client(&env, "f1").args(["--json", "check"])).failure().json();
    let errors = c1["errors"].to_string();
    assert!(
        errors.contains(&s1) && errors.contains(&format!("the tombstone of snapshot {s2}")),
        "{c1}"
    );

    // Delete s3 too, after a newer snapshot saw it: two breaks, the older witness first.
    let s4 = env.backup([&a]);
    fs::remove_file(env.repo().join("snapshots").join(&s3)).unwrap();
    let v = run(fresh_client(&env, "f2").args(["--json", "verify"]))
        .failure()
        .json();
    let errors: Vec<String> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .filter(|e| e.contains("is gone without a tombstone"))
        .collect();
    assert_eq!(errors.len(), 2, "{v}");
    assert!(errors[0].contains(&s1) && errors[0].contains(&s2), "{errors:?}");
    assert!(
        errors[1].contains(&s3) && errors[1].contains(&format!("snapshot {s4} records it in its chain")),
        "{errors:?}"
    );

    // Acknowledged, the chain runs on from the acknowledgements.
    let out = run(fresh_client(&env, "f3").args(["--json", "forget", "--vanished"])).success();
    let mut acked: Vec<String> = serde_json::from_value(out.json()["acknowledged"].clone()).unwrap();
    acked.sort();
    let mut want = vec![s1.clone(), s3.clone()];
    want.sort();
    assert_eq!(acked, want);
    run(fresh_client(&env, "f4").args(["check"])).success();
    let s5 = env.backup([&b]);
    let snaps = env.run(["--json", "snapshots"]).success().json();
    let s5_seen = snaps
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == s5.as_str())
        .unwrap()["seen"]
        .clone();
    assert!(s5_seen.to_string().contains(&s4), "{s5_seen}");
    run(fresh_client(&env, "f5").args(["check"])).success();
}

/// `copy` keeps the destination's chain: the first copy records the destination's heads,
/// each next one the copy before it (ids of the source mean nothing there).
#[test]
fn copies_join_the_destinations_chain() {
    let env = Env::with_repo();
    let other = env.path("other");
    run(env
        .cmd_at(&other)
        .args(["init", "--kdf-memory", "1024", "--kdf-time", "1", "--weak-kdf"]))
    .success();
    let src = env.path("src");
    write(src.join("a"), b"a");
    let there = run(env.cmd_at(&other).arg("backup").arg(&src)).success().snapshot_id();
    env.backup([&src]);
    write(src.join("b"), b"b");
    env.backup([&src]);
    run(env
        .cmd()
        .env("PROJECTCLONE_TO_PASSWORD", PASSWORD)
        .args(["copy", "--to"])
        .arg(&other))
    .success();
    let snaps = run(env.cmd_at(&other).args(["--json", "snapshots"])).success().json();
    let snaps = snaps.as_array().unwrap();
    assert_eq!(snaps.len(), 3);
    let copies: Vec<&serde_json::Value> = snaps.iter().filter(|s| s["id"] != there.as_str()).collect();
    let (first, second) = if copies[0]["seen"] == serde_json::json!([there]) {
        (copies[0], copies[1])
    } else {
        (copies[1], copies[0])
    };
    assert_eq!(first["seen"], serde_json::json!([there]), "{snaps:?}");
    assert_eq!(second["seen"], serde_json::json!([first["id"]]), "{snaps:?}");
    run(env.cmd_at(&other).arg("check")).success();
}

/// `verify --anchor FILE`: the first run makes the anchor; a snapshot forgotten on purpose
/// and a new one pass; the newest snapshot deleted behind every client's back (nobody's
/// parent, so `check` cannot see it) and an anchor edited by hand are both found.
#[test]
fn verify_with_an_anchor_finds_the_newest_snapshot_deleted_behind_its_back() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("a"), b"a");
    let s1 = env.backup([&src]);
    let anchor = env.path("outside/laptop.anchor");
    fs::create_dir_all(anchor.parent().unwrap()).unwrap();
    let verify = |c: &mut assert_cmd::Command| {
        c.args(["--json", "verify", "--anchor"]).arg(&anchor);
        run(c)
    };
    let v = verify(&mut fresh_client(&env, "a")).success().json();
    assert_eq!(
        (v["ok"].as_bool(), v["snapshots"].as_u64()),
        (Some(true), Some(1)),
        "{v}"
    );
    assert_eq!(v["anchor"]["made"], serde_json::Value::Null, "{v}");
    assert!(fs::read_to_string(&anchor).unwrap().contains(&s1));

    write(src.join("b"), b"b");
    let s2 = env.backup([&src]);
    env.run(["forget", &s1]).success();
    let v = verify(&mut fresh_client(&env, "b")).success().json();
    assert_eq!(v["anchor"]["checked"], 1, "{v}");
    assert_eq!(v["forgotten"], 1, "{v}");

    // The newest snapshot deleted behind everyone's back: a client that never saw it
    // finds it through the anchor only.
    fs::remove_file(env.repo().join("snapshots").join(&s2)).unwrap();
    run(fresh_client(&env, "c").arg("check")).success();
    let before = fs::read(&anchor).unwrap();
    let out = verify(&mut fresh_client(&env, "c")).failure();
    let v = out.json();
    assert!(v["errors"].to_string().contains(&s2), "{v}");
    assert_eq!(v["anchor"]["updated"], false, "{v}");
    assert_eq!(
        fs::read(&anchor).unwrap(),
        before,
        "the anchor is not updated past a break"
    );

    // An anchor changed by hand is refused.
    let edited = String::from_utf8(before).unwrap().replace(&s2, &"0".repeat(64));
    fs::write(&anchor, edited).unwrap();
    let out = run(fresh_client(&env, "d").args(["verify", "--anchor"]).arg(&anchor)).failure();
    assert!(out.stderr.contains("digest does not match"), "{}", out.stderr);
}
