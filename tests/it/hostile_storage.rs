//! Attacks and faults of a repository kept where others can look: weak or planted
//! key-derivation settings, a core dump of a process holding the password, other local
//! users reading files made under the default umask, and strings in the repository that
//! try to drive the terminal. `trust` holds the attacks on what a client trusts: planted
//! keys and configs, deleted or replayed snapshots, objects sized to exhaust a client.

mod trust;

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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
    let real = files_under(&env.repo().join("keys"))[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let planted = [(8192, 13), (263_168, 1), (131_072, 7)];
    let mut names = Vec::new();
    for (i, (m, t)) in planted.into_iter().enumerate() {
        // Named by their hash (as every key file must be), and before the real key file,
        // so a client that never opened the repository meets them first.
        let (name, bytes) = (0u64..)
            .map(|n| {
                let mut salt = [i as u8; 32];
                salt[..8].copy_from_slice(&n.to_le_bytes());
                let bytes = encode_key_file(&KeyFile {
                    kdf: Some(KdfParams {
                        m_cost: m,
                        t_cost: t,
                        p_cost: 4,
                    }),
                    salt,
                    created_unix_ns: 0,
                    wrapped: random_bytes(i as u64, 72),
                });
                (blake3::hash(&bytes).to_hex().to_string(), bytes)
            })
            .find(|(name, _)| *name < real)
            .unwrap();
        fs::write(env.repo().join("keys").join(&name), bytes).unwrap();
        names.push(name);
    }
    let out = run(env
        .cmd()
        .env("XDG_STATE_HOME", env.path("fresh-state"))
        .arg("snapshots"))
    .success();
    for name in &names {
        assert!(
            out.stderr.contains(&format!("key file {name}:")) && out.stderr.contains("out of range"),
            "{name} not reported skipped:\n{}",
            out.stderr
        );
    }
}

/// A crash (or `kill -QUIT`) of a process holding the password and the master key would
/// write both into a core file. The process sets its core limit to 0 first thing: seen in
/// `/proc/PID/limits` of a child that waits to read its password from a FIFO, started
/// with an unlimited core limit.
#[test]
fn a_core_dump_of_a_process_holding_the_password_is_disabled() {
    let env = Env::with_repo();
    let fifo = env.path("password.fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .expect("mkfifo");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("ulimit -c unlimited && exec \"$0\" \"$@\"")
        .arg(bin_path())
        .arg("-r")
        .arg(env.repo())
        .arg("--cache-dir")
        .arg(env.cache())
        .arg("--password-file")
        .arg(&fifo)
        .arg("snapshots")
        .env_remove("PROJECTCLONE_PASSWORD")
        .env_remove("PROJECTCLONE_PASSWORD_FILE")
        .env("HOME", env.path("home"))
        .env("XDG_CACHE_HOME", env.path("xdg-cache"))
        .env("XDG_CONFIG_HOME", env.path("xdg-config"))
        .env("XDG_DATA_HOME", env.path("xdg-data"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Opening the FIFO for writing succeeds once the child opened it to read its password,
    // that is, well after its start.
    let mut writer = None;
    for _ in 0..6000 {
        match fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
        {
            Ok(f) => {
                writer = Some(f);
                break;
            }
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                if let Some(status) = child.try_wait().expect("try_wait") {
                    let mut err = String::new();
                    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
                    panic!("the child ended ({status}) before reading its password: {err}");
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => panic!("open the FIFO: {e}"),
        }
    }
    let mut writer = writer.expect("the child opens its password file");
    let limits = fs::read_to_string(format!("/proc/{}/limits", child.id())).expect("read /proc/PID/limits");
    let exe = fs::read_link(format!("/proc/{}/exe", child.id())).expect("readlink /proc/PID/exe");
    std::io::Write::write_all(&mut writer, PASSWORD.as_bytes()).expect("write the password");
    drop(writer);
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(exe, bin_path().canonicalize().unwrap());
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap_or_else(|| panic!("no core limit in:\n{limits}"));
    let fields: Vec<&str> = core.split_whitespace().collect();
    assert_eq!(
        fields[4..6],
        ["0", "0"],
        "soft and hard core limits of the running process: {core}"
    );
}

/// Run the binary as `Env::cmd` without `-r` and `--cache-dir` (the password in the
/// environment, HOME and XDG folders of its own), with `umask` set for it alone.
fn with_umask(env: &Env, umask: &str, args: &[&OsStr]) -> Out {
    let mut sh = assert_cmd::Command::new("sh");
    sh.arg("-c")
        .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
        .arg(bin_path())
        .args(args);
    for v in [
        "PROJECTCLONE_REPO",
        "PROJECTCLONE_PASSWORD_FILE",
        "PROJECTCLONE_CACHE_DIR",
        "PROJECTCLONE_NEW_PASSWORD",
        "PROJECTCLONE_LOG",
        "RUST_LOG",
    ] {
        sh.env_remove(v);
    }
    sh.env("PROJECTCLONE_PASSWORD", PASSWORD)
        .env("HOME", env.path("home"))
        .env("XDG_DATA_HOME", env.path("xdg-data"))
        .env("XDG_CACHE_HOME", env.path("xdg-cache"))
        .env("XDG_CONFIG_HOME", env.path("xdg-config"))
        .env("XDG_STATE_HOME", env.path("xdg-state"))
        .env("TZ", "UTC")
        .current_dir(env.root())
        .timeout(std::time::Duration::from_secs(240));
    run(&mut sh)
}

/// Every entry below and including `dir` with its permission bits, for messages.
fn modes_below(dir: &Path) -> Vec<(PathBuf, bool, u32)> {
    let mut out = Vec::new();
    fn walk(p: &Path, out: &mut Vec<(PathBuf, bool, u32)>) {
        let md = fs::symlink_metadata(p).expect("lstat");
        out.push((p.to_path_buf(), md.is_dir(), md.mode() & 0o7777));
        if md.is_dir() {
            for e in fs::read_dir(p).expect("read_dir") {
                walk(&e.expect("entry").path(), out);
            }
        }
    }
    walk(dir, &mut out);
    out
}

#[track_caller]
fn assert_modes(dir: &Path, dir_mode: u32, file_mode: u32) {
    let wrong: Vec<String> = modes_below(dir)
        .into_iter()
        .filter(|(_, is_dir, m)| *m != if *is_dir { dir_mode } else { file_mode })
        .map(|(p, is_dir, m)| format!("{} {} {m:o}", if is_dir { "dir " } else { "file" }, p.display()))
        .collect();
    assert!(
        wrong.is_empty(),
        "below {}: want folders {dir_mode:o} and files {file_mode:o}, got:\n{}",
        dir.display(),
        wrong.join("\n")
    );
}

/// Another user on the machine reads a repository or a cache written under umask 022:
/// key files (offline guessing), and the cache's host names, paths, tags and notes in
/// clear. Everything the tool writes is 0600, every folder 0700, whatever the umask,
/// including the default repository and cache it creates with their parents.
#[test]
fn other_users_read_a_repository_and_cache_made_under_umask_022() {
    let env = Env::new();
    let src = env.path("src");
    write(src.join("a.txt"), b"private project\n");
    let (repo, cache) = (env.repo(), env.cache());
    let os = OsString::from;
    let with = |args: &[OsString]| {
        let mut full = vec![os("-r"), repo.clone().into(), os("--cache-dir"), cache.clone().into()];
        full.extend_from_slice(args);
        let refs: Vec<&OsStr> = full.iter().map(|a| a.as_os_str()).collect();
        with_umask(&env, "022", &refs)
    };
    with(&[
        os("init"),
        os("--kdf-memory"),
        os("1024"),
        os("--kdf-time"),
        os("1"),
        os("--weak-kdf"),
    ])
    .success();
    with(&[
        os("backup"),
        src.clone().into(),
        os("--tag"),
        os("t"),
        os("--note"),
        os("n"),
    ])
    .success();
    let new_pw = env.path("new-pw");
    fs::write(&new_pw, "another password").unwrap();
    fs::set_permissions(&new_pw, fs::Permissions::from_mode(0o600)).unwrap();
    with(&[os("key"), os("add"), os("--new-password-file"), new_pw.clone().into()]).success();
    with(&[os("snapshots")]).success();
    assert!(env.pack_count() > 0);
    assert_modes(&repo, 0o700, 0o600);
    assert_modes(&cache, 0o700, 0o600);
    assert!(
        modes_below(&cache).iter().any(|(p, _, _)| p.ends_with("index.db")),
        "the cache holds index.db"
    );

    // The default repository and cache, created by the first backup with their parents.
    with_umask(&env, "022", &["backup".as_ref(), src.as_os_str()]).success();
    with_umask(&env, "022", &["snapshots".as_ref()]).success();
    assert_modes(&env.path("xdg-data/projectclone"), 0o700, 0o600);
    assert_modes(&env.path("xdg-cache/projectclone"), 0o700, 0o600);
}

/// A repository shared with a group on purpose (`config` and the folders opened to the
/// group) stays shared: new objects get `config`'s bits, new folders those plus execute,
/// exactly, even where the writer's umask would take the group's write bit away.
#[test]
fn a_group_shared_repository_stays_shared_under_a_stricter_umask() {
    let env = Env::with_repo();
    let repo = env.repo();
    fs::set_permissions(repo.join("config"), fs::Permissions::from_mode(0o660)).unwrap();
    for (p, is_dir, _) in modes_below(&repo) {
        if is_dir {
            fs::set_permissions(&p, fs::Permissions::from_mode(0o770)).unwrap();
        } else {
            fs::set_permissions(&p, fs::Permissions::from_mode(0o660)).unwrap();
        }
    }
    let src = env.path("src");
    write(src.join("b.bin"), random_bytes(5, 300_000));
    let args: Vec<OsString> = vec![
        "-r".into(),
        repo.clone().into(),
        "--cache-dir".into(),
        env.cache().into(),
        "backup".into(),
        src.into(),
    ];
    let refs: Vec<&OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    with_umask(&env, "022", &refs).success();
    assert!(env.pack_count() > 0);
    assert_modes(&repo, 0o770, 0o660);
}

const EVIL: &str = "evil\x1b[2J\x1b]0;owned\x07\nFAKE LINE\rover\x7f";

/// No byte of `out` may reach a terminal as a control character: every byte below 0x20
/// is a line's end, none is DEL, and no injected text starts a line of its own.
#[track_caller]
fn assert_no_control_bytes(what: &str, out: &Out) {
    for (stream, bytes) in [("stdout", out.raw_stdout.as_slice()), ("stderr", out.stderr.as_bytes())] {
        let bad: Vec<(usize, u8)> = bytes
            .iter()
            .copied()
            .enumerate()
            .filter(|&(_, b)| (b < 0x20 && b != b'\n') || b == 0x7f)
            .collect();
        assert!(
            bad.is_empty(),
            "{what}: raw control bytes on {stream} at {bad:?}:\n{}",
            String::from_utf8_lossy(bytes)
        );
        let text = String::from_utf8_lossy(bytes);
        assert!(
            !text.lines().any(|l| l.starts_with("FAKE LINE")),
            "{what}: an injected line on {stream}:\n{text}"
        );
    }
}

/// A repository written by someone else carries host names, tags, notes, user names,
/// paths, key file names and lock holders with terminal escapes, a newline and a carriage
/// return. Human output escapes them (`\xHH`) on stdout and stderr; JSON keeps them exact.
#[test]
fn control_bytes_in_repository_strings_never_reach_the_terminal() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("plain.txt"), b"data\n");
    write(pb(&src, b"name\x1b[2J\rx"), b"odd name\n");
    std::os::unix::fs::symlink("tar\x1b[1mget\n", src.join("link")).unwrap();
    let id = env.backup([
        src.as_os_str(),
        "--host".as_ref(),
        EVIL.as_ref(),
        "--tag".as_ref(),
        EVIL.as_ref(),
        "--note".as_ref(),
        EVIL.as_ref(),
    ]);
    // A key file and a live lock of another client, both named by the repository.
    fs::write(env.repo().join("keys").join("0\x1b[2J\r\nFAKE LINE"), b"not a key").unwrap();
    let now = now_ns();
    {
        let f = Forge::open(&env);
        let lock = projectclone::format::Lock {
            hostname: EVIL.into(),
            boot_id: "another-boot".into(),
            pid: 4242,
            pid_start: 1,
            exclusive: false,
            created_unix_ns: now,
            refreshed_unix_ns: now,
            purpose: EVIL.into(),
        };
        let lock_id = *blake3::hash(b"evil lock").as_bytes();
        let plain = projectclone::format::encode_versioned(1, &lock);
        let bytes = projectclone::format::seal_object(
            f.repo.repo_id(),
            &f.repo.cipher,
            projectclone::format::Kind::Lock,
            &lock_id,
            &plain,
        );
        f.repo
            .backend
            .write_new(&projectclone::backend::Dir::Locks.path(&hex_of(&lock_id)), &bytes)
            .unwrap();
    }

    let snaps = env.run(["snapshots"]).success();
    assert_no_control_bytes("snapshots", &snaps);
    assert!(snaps.stdout.contains("evil\\x1b[2J"), "{}", snaps.stdout);
    for args in [
        vec!["ls", "latest"],
        vec!["ls", "-l", "latest"],
        vec!["stats", "latest"],
        vec!["diff", &id, "latest"],
    ] {
        assert_no_control_bytes(&args.join(" "), &env.run(&args).success());
    }
    // `check` reports the planted key file as unreadable (exit 1) and names it escaped.
    let check = env.run(["check"]).code(1);
    assert_no_control_bytes("check", &check);
    assert!(
        check
            .stdout
            .contains("unreadable key file 0\\x1b[2J\\x0d\\x0aFAKE LINE"),
        "{}",
        check.stdout
    );
    // The live lock stops an exclusive command, whose error names the holder.
    let keys = env.run(["key", "list"]).code(11);
    assert_no_control_bytes("key list (locked)", &keys);
    assert!(keys.stderr.contains("evil\\x1b[2J"), "{}", keys.stderr);
    let prune = env.run(["forget", &id, "--prune"]).success();
    assert_no_control_bytes("forget --prune", &prune);

    // JSON keeps every string exact.
    let env2 = Env::with_repo();
    env2.backup([
        src.as_os_str(),
        "--host".as_ref(),
        EVIL.as_ref(),
        "--note".as_ref(),
        EVIL.as_ref(),
    ]);
    let s = &env2.snapshots()[0];
    assert_eq!(s["hostname"], EVIL);
    assert_eq!(s["note"], EVIL);
}
