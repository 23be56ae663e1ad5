//! Attacks and faults of a repository kept where others can look (issue 15): weak or planted
//! key-derivation settings.

use std::fs;

use crate::util::*;

/// `init` with settings weaker than the default (RFC 9106's second recommendation:
/// 64 MiB, 3 passes) is refused unless `--weak-kdf` says so, and creates nothing.
#[test]
fn init_with_a_weak_kdf_is_refused_without_the_flag() {
    let env = Env::new();
    for (m, t) in [("1024", "1"), ("65536", "2"), ("32768", "3")] {
        let out = env.run(["init", "--kdf-memory", m, "--kdf-time", t]).code(1);
        assert!(
            out.stderr.contains("weaker than the default") && out.stderr.contains("--weak-kdf"),
            "{m}/{t}: {}",
            out.stderr
        );
        assert!(!env.repo().exists(), "{m}/{t}: nothing may be created");
    }
    // Over the bound no open accepts: refused before anything is written, flag or not.
    let out = env
        .run(["init", "--kdf-memory", "524288", "--kdf-time", "3", "--weak-kdf"])
        .code(1);
    assert!(out.stderr.contains("out of range"), "{}", out.stderr);
    assert!(!env.repo().exists());
    env.run(["init", "--kdf-memory", "1024", "--kdf-time", "1", "--weak-kdf"])
        .success();
}

/// `key list --json` opened with `password`: each key's id and KDF settings.
fn key_kdfs(env: &Env, password: &str) -> Vec<(String, serde_json::Value)> {
    let out = run(env
        .cmd()
        .env("PROJECTCLONE_PASSWORD", password)
        .args(["--json", "key", "list"]))
    .success();
    out.json()
        .as_array()
        .expect("an array")
        .iter()
        .map(|k| (k["id"].as_str().expect("id").to_string(), k["kdf"].clone()))
        .collect()
}

/// A key added to a repository made with weak settings (or whose password is changed) is
/// at least the default, parameter by parameter, and keeps a stronger setting of the key
/// in use.
#[test]
fn a_key_added_after_a_weak_init_is_at_least_the_default() {
    let env = Env::with_repo();
    let first = key_kdfs(&env, PASSWORD);
    assert_eq!(first[0].1["m_cost"], 1024);
    run(env
        .cmd()
        .env("PROJECTCLONE_NEW_PASSWORD", "second password")
        .args(["key", "add"]))
    .success();
    let keys = key_kdfs(&env, "second password");
    assert_eq!(keys.len(), 2);
    let new = &keys.iter().find(|k| k.0 != first[0].0).expect("the added key").1;
    assert_eq!(
        (&new["m_cost"], &new["t_cost"], &new["p_cost"]),
        (&65536.into(), &3.into(), &4.into()),
        "the added key"
    );

    // More passes than the default are kept; the memory is raised to the default.
    let env = Env::new();
    env.run(["init", "--kdf-memory", "65536", "--kdf-time", "4"]).success();
    run(env
        .cmd()
        .env("PROJECTCLONE_NEW_PASSWORD", "new password")
        .args(["key", "passwd"]))
    .success();
    let keys = key_kdfs(&env, "new password");
    assert_eq!(keys.len(), 1);
    assert_eq!((&keys[0].1["m_cost"], &keys[0].1["t_cost"]), (&65536.into(), &4.into()));
}

/// Key files planted in `keys/` whose Argon2id settings are beyond the read bounds (too
/// much memory, too many passes, too much work) would make every open slow and hungry;
/// they are skipped before any derivation, and the open goes on to the real key.
#[test]
fn planted_key_files_with_costly_kdf_settings_are_skipped_before_deriving() {
    use projectclone::crypto::KdfParams;
    use projectclone::format::{KeyFile, encode_key_file};
    let env = Env::with_repo();
    let planted = [(8192, 13), (263_168, 1), (131_072, 7)];
    let mut names = Vec::new();
    for (i, (m, t)) in planted.into_iter().enumerate() {
        let bytes = encode_key_file(&KeyFile {
            kdf: Some(KdfParams {
                m_cost: m,
                t_cost: t,
                p_cost: 4,
            }),
            salt: [i as u8; 32],
            created_unix_ns: 0,
            wrapped: random_bytes(i as u64, 72),
        });
        // Named to be tried before the real key file.
        let name = format!("{:0>64}", i);
        fs::write(env.repo().join("keys").join(&name), bytes).unwrap();
        names.push(name);
    }
    let out = env.run(["snapshots"]).success();
    for name in &names {
        assert!(
            out.stderr.contains(&format!("key file {name} skipped")) && out.stderr.contains("out of range"),
            "{name} not reported skipped:\n{}",
            out.stderr
        );
    }
}
