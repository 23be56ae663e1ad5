//! `-q` is errors only for `repair`, `copy`, `forget --vanished` and `trust accept` too
//! (their `--json` documents are unchanged), and a run stopped by a signal with `--json`
//! prints one `exit_error` object on stdout like any other failure.

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::util::*;

#[test]
fn quiet_silences_repair_copy_and_trust_accept() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("a.txt"), b"a");
    env.backup([&src]);
    let other = env.path("other");
    let mut c = env.cmd_at(&other);
    c.args(["init", "--kdf-memory", "1024", "--kdf-time", "1", "--weak-kdf"]);
    run(&mut c).success();
    let pw = env.path("pw");
    write(&pw, PASSWORD);
    let to = |json: bool| {
        let mut v = vec!["-q".to_string()];
        if json {
            v.push("--json".into());
        }
        v.extend([
            "copy".into(),
            "--to".into(),
            other.display().to_string(),
            "--to-password-file".into(),
            pw.display().to_string(),
        ]);
        v
    };
    for args in [
        vec!["-q".to_string(), "repair".into(), "index".into()],
        vec!["-q".into(), "repair".into(), "snapshots".into()],
        vec!["-q".into(), "forget".into(), "--vanished".into()],
        vec!["-q".into(), "trust".into(), "accept".into()],
        to(false),
    ] {
        let out = env.run(&args).success();
        assert_eq!(out.stdout, "", "{args:?} -q: stdout");
        assert_eq!(out.stderr, "", "{args:?} -q: stderr");
        // Without -q the same command tells what it did.
        let out = env.run(&args[1..]).success();
        assert!(!out.stdout.is_empty(), "{args:?} without -q says what it did");
    }
    // --json keeps its one document with -q.
    let v = env.run(to(true)).success().json();
    assert_eq!(v["skipped"].as_array().map(Vec::len), Some(1), "{v}");
    // `trust` alone is the report asked for: it prints with -q.
    let out = env.run(["-q", "trust"]).success();
    assert!(out.stdout.contains("snapshots seen:"), "{}", out.stdout);
}

#[test]
fn a_signal_with_json_prints_one_exit_error_object() {
    let env = Env::with_repo();
    for (sig, code) in [(libc::SIGTERM, 143), (libc::SIGINT, 130)] {
        // `backup --stdin` waits on its input, which stays open: stopped while it runs.
        let mut child = std::process::Command::new(bin_path())
            .env_remove("PROJECTCLONE_PASSWORD_FILE")
            .env("PROJECTCLONE_PASSWORD", PASSWORD)
            .env("HOME", env.path("home"))
            .env("XDG_CACHE_HOME", env.path("xdg-cache"))
            .env("XDG_STATE_HOME", env.path("xdg-state"))
            .env("XDG_CONFIG_HOME", env.path("xdg-config"))
            .arg("-r")
            .arg(env.repo())
            .arg("--cache-dir")
            .arg(env.cache())
            .args(["--json", "backup", "--stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        // Kept open until the child is gone (`wait` would close it: an end of input).
        let _input = child.stdin.take();
        let start = Instant::now();
        while env.repo().join("locks").read_dir().unwrap().next().is_none()
            && start.elapsed() < Duration::from_secs(120)
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            env.repo().join("locks").read_dir().unwrap().next().is_some(),
            "the backup holds its lock while it waits for input"
        );
        // SAFETY: kill(2) on our own child, which has not been waited for yet.
        assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, sig) }, 0);
        let status = child.wait().expect("wait");
        let mut stdout = String::new();
        child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
        let mut stderr = String::new();
        child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
        assert_eq!(status.code(), Some(code), "{stderr}");
        assert_eq!(stdout.lines().count(), 1, "one document: {stdout}");
        let v: serde_json::Value = serde_json::from_str(&stdout).expect("JSON on stdout");
        assert_eq!(v["message_type"], "exit_error", "{v}");
        assert_eq!(v["code"], code, "{v}");
        assert!(v["message"].as_str().unwrap().starts_with("stopped by SIG"), "{v}");
        assert!(stderr.contains("stopped by SIG"), "{stderr}");
    }
}
