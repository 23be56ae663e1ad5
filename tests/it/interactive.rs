//! Interactive mode through a real pseudo-terminal: `projectclone` alone guides a first
//! backup, `restore -i` picks from lists; keys are typed and the screen is read. Without
//! a terminal nothing prompts, and `-i` is a usage error.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command as StdCommand;
use std::time::Duration;

use expectrl::process::unix::WaitStatus;
use expectrl::session::OsSession as Session;
use expectrl::{Eof, Expect};

use crate::util::*;

const DOWN: &str = "\x1b[B";
const ESC: &str = "\x1b";

/// The binary on a pseudo-terminal, in `env`'s isolated HOME and XDG folders, started in
/// `dir`. Colours off, so the screen reads as text.
fn spawn(env: &Env, dir: &Path, args: &[&str], password: Option<&str>) -> Session {
    let mut c = StdCommand::new(bin_path());
    c.args(args);
    for v in [
        "PROJECTCLONE_REPO",
        "PROJECTCLONE_PASSWORD",
        "PROJECTCLONE_PASSWORD_FILE",
        "PROJECTCLONE_CACHE_DIR",
        "PROJECTCLONE_PASSWORD_COMMAND",
        "PROJECTCLONE_PROFILE",
        "PROJECTCLONE_LOG",
        "RUST_LOG",
    ] {
        c.env_remove(v);
    }
    if let Some(p) = password {
        c.env("PROJECTCLONE_PASSWORD", p);
    }
    c.env("HOME", env.path("home"))
        .env("XDG_DATA_HOME", env.path("xdg-data"))
        .env("XDG_CACHE_HOME", env.path("xdg-cache"))
        .env("XDG_CONFIG_HOME", env.path("xdg-config"))
        .env("XDG_STATE_HOME", env.path("xdg-state"))
        .env("TZ", "UTC")
        .env("NO_COLOR", "1")
        .env("TERM", "xterm")
        .current_dir(dir);
    on_pty(c)
}

/// `c` on a pseudo-terminal set as a user's terminal is. The pty library turns echo off
/// in the child before it starts the program; a terminal a user types into has it on, and
/// `type_secret` needs the prompt's own switch from on to off to know that the prompt has
/// taken the terminal.
fn on_pty(mut c: StdCommand) -> Session {
    // SAFETY: runs in the forked child before exec and only makes two ioctl calls on fd 0.
    unsafe {
        c.pre_exec(|| {
            let stdin = std::os::fd::BorrowedFd::borrow_raw(0);
            let mut t = rustix::termios::tcgetattr(stdin)?;
            t.local_modes |= rustix::termios::LocalModes::ECHO;
            rustix::termios::tcsetattr(stdin, rustix::termios::OptionalActions::Now, &t)?;
            Ok(())
        });
    }
    let mut s = Session::spawn(c).expect("spawn on a pty");
    s.set_expect_timeout(Some(Duration::from_secs(120)));
    s
}

/// Wait for `text` on the screen; everything shown up to it, as text.
#[track_caller]
fn wait_for(s: &mut Session, text: &str) -> String {
    match s.expect(text) {
        Ok(c) => String::from_utf8_lossy(c.as_bytes()).into_owned(),
        Err(e) => panic!("waiting for {text:?} on the screen: {e}"),
    }
}

/// The guided backup of `proj`, taken with its defaults up to the new repository's
/// password prompt.
fn at_new_password(env: &Env, proj: &Path) -> Session {
    let mut s = spawn(env, proj, &[], None);
    wait_for(&mut s, "Project folder to back up");
    send(&mut s, "\r");
    wait_for(&mut s, "Repository (where");
    send(&mut s, "\r");
    wait_for(&mut s, "New repository password");
    s
}

fn send(s: &mut Session, keys: &str) {
    s.send(keys).expect("type on the pty");
}

/// Type a password once the prompt has turned echo off. A password prompt discards what
/// was typed before it took the terminal (TCSAFLUSH, as getpass does), so keys sent as
/// soon as its text shows could be lost. The kernel discards before it turns echo off, so
/// echo seen off means keys sent now are kept; this holds because `spawn` starts the
/// program with echo on, as a user's terminal is.
#[track_caller]
fn type_secret(s: &mut Session, keys: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while s.get_process().get_echo().expect("read the pty's termios") {
        assert!(
            std::time::Instant::now() < deadline,
            "the password prompt never turned echo off"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    send(s, keys);
}

/// Read the screen to the end and return it with the exit code.
fn finish(mut s: Session) -> (String, i32) {
    let rest = s
        .expect(Eof)
        .map(|c| String::from_utf8_lossy(c.as_bytes()).into_owned());
    let rest = rest.expect("the program ends");
    match s.get_process().wait().expect("wait") {
        WaitStatus::Exited(_, code) => (rest, code),
        other => panic!("ended by {other:?}; screen:\n{rest}"),
    }
}

/// A project with a big dependency folder and a big data folder.
fn project(env: &Env) -> std::path::PathBuf {
    let p = env.path("proj");
    write(p.join("src/main.rs"), b"fn main() {}\n");
    write(p.join("README.md"), b"hello\n");
    write(p.join("node_modules/left-pad/index.js"), random_bytes(1, 300_000));
    write(p.join("node_modules/left-pad/package.json"), b"{}");
    write(p.join("data/big.bin"), random_bytes(2, 120_000));
    p
}

/// The first run of 64 hex digits on the screen (a snapshot id).
fn hex_id(screen: &str) -> Option<String> {
    let b = screen.as_bytes();
    let mut run = 0;
    for (i, c) in b.iter().enumerate() {
        run = if c.is_ascii_hexdigit() { run + 1 } else { 0 };
        if run == 64 && b.get(i + 1).is_none_or(|n| !n.is_ascii_hexdigit()) {
            return Some(screen[i + 1 - 64..=i].to_string());
        }
    }
    None
}

fn ls_paths(env: &Env, repo: &Path, password: &str, snap: &str) -> Vec<String> {
    let mut c = env.bare();
    c.env("PROJECTCLONE_PASSWORD", password)
        .arg("-r")
        .arg(repo)
        .args(["--json", "ls", snap]);
    let v = run(&mut c).success().json();
    v.as_array()
        .expect("ls --json is an array")
        .iter()
        .map(|e| e["path"].as_str().expect("path").to_string())
        .collect()
}

#[test]
fn no_arguments_on_a_terminal_guides_a_first_backup() {
    let env = Env::new();
    let proj = project(&env);
    let mut s = spawn(&env, &proj, &[], None);
    let screen = wait_for(&mut s, "Project folder to back up");
    assert!(screen.contains("A few questions"), "{screen}");
    wait_for(&mut s, &proj.display().to_string());
    send(&mut s, "\r");
    wait_for(&mut s, "Repository (where the snapshots are kept");
    send(&mut s, "\r");
    let repo = env.path("xdg-data/projectclone/repo");
    wait_for(&mut s, &format!("A new repository will be made at {}", repo.display()));
    wait_for(&mut s, "New repository password");
    type_secret(&mut s, "s3cret pass\r");
    wait_for(&mut s, "Repeat the password");
    // A second password that differs: both are asked again.
    type_secret(&mut s, "s3cret pasS\r");
    wait_for(&mut s, "the passwords do not match; type them again");
    wait_for(&mut s, "New repository password");
    type_secret(&mut s, "s3cret pass\r");
    wait_for(&mut s, "Repeat the password");
    type_secret(&mut s, "s3cret pass\r");
    // The biggest folders, measured, the rebuilt one preselected; also leave out data/.
    let screen = wait_for(&mut s, "Leave out");
    assert!(!screen.contains("s3cret"), "the password is never echoed:\n{screen}");
    let nm = bytesize::ByteSize(300_002).to_string();
    let data = bytesize::ByteSize(120_000).to_string();
    let screen = wait_for(&mut s, "src");
    let nm_at = screen.find("node_modules").expect("node_modules offered");
    let data_at = screen.find("data").expect("data offered");
    assert!(nm_at < data_at, "biggest first:\n{screen}");
    assert!(
        screen.contains(&nm) && screen.contains(&data),
        "sizes {nm} and {data} shown:\n{screen}"
    );
    assert!(screen.contains("✔ node_modules"), "node_modules preselected:\n{screen}");
    assert!(screen.contains("⬚ data"), "data not preselected:\n{screen}");
    send(&mut s, DOWN);
    send(&mut s, " ");
    send(&mut s, "\r");
    let screen = wait_for(&mut s, "Start the backup now?");
    assert!(
        screen.contains(&format!(
            "projectclone backup {} --exclude /node_modules/ --exclude /data/",
            proj.display()
        )),
        "the equivalent command line:\n{screen}"
    );
    send(&mut s, "\r");
    let (rest, code) = finish(s);
    assert_eq!(code, 0, "{rest}");
    assert!(rest.contains("creating repository"), "{rest}");
    let id = hex_id(&rest).unwrap_or_else(|| panic!("a snapshot id on the screen:\n{rest}"));
    assert!(rest.contains("restore -i"), "how to restore is told:\n{rest}");
    let paths = ls_paths(&env, &repo, "s3cret pass", &id);
    assert!(paths.contains(&"/src/main.rs".to_string()), "{paths:?}");
    assert!(paths.contains(&"/README.md".to_string()), "{paths:?}");
    assert!(
        !paths
            .iter()
            .any(|p| p.starts_with("/node_modules") || p.starts_with("/data")),
        "excluded folders are not in the snapshot: {paths:?}"
    );
}

#[test]
fn guided_backup_into_an_existing_repository_asks_its_password_again_when_wrong() {
    let env = Env::new();
    let proj = project(&env);
    let repo = env.path("xdg-data/projectclone/repo");
    let mut c = env.bare();
    c.env("PROJECTCLONE_PASSWORD", PASSWORD).arg("-r").arg(&repo).args([
        "init",
        "--kdf-memory",
        "1024",
        "--kdf-time",
        "1",
        "--weak-kdf",
    ]);
    run(&mut c).success();
    let mut s = spawn(&env, &proj, &[], None);
    wait_for(&mut s, "Project folder to back up");
    send(&mut s, "\r");
    wait_for(&mut s, &format!("A repository exists at {}", repo.display()));
    wait_for(&mut s, "Repository password");
    type_secret(&mut s, "not it\r");
    wait_for(&mut s, "That is not the password");
    wait_for(&mut s, "Repository password");
    type_secret(&mut s, &format!("{PASSWORD}\r"));
    wait_for(&mut s, "Leave out");
    wait_for(&mut s, "src");
    send(&mut s, "\r");
    wait_for(&mut s, "Start the backup now?");
    send(&mut s, "y");
    let (rest, code) = finish(s);
    assert_eq!(code, 0, "{rest}");
    let mut c = env.bare();
    c.env("PROJECTCLONE_PASSWORD", PASSWORD)
        .arg("-r")
        .arg(&repo)
        .args(["--json", "snapshots"]);
    let snaps = run(&mut c).success().json();
    let snaps = snaps.as_array().unwrap();
    assert_eq!(snaps.len(), 1, "{rest}");
    let paths = ls_paths(&env, &repo, PASSWORD, snaps[0]["id"].as_str().unwrap());
    assert!(paths.contains(&"/data/big.bin".to_string()), "{paths:?}");
    assert!(!paths.iter().any(|p| p.starts_with("/node_modules")), "{paths:?}");
}

#[test]
fn escape_at_a_prompt_cancels_and_creates_nothing() {
    let env = Env::new();
    let proj = project(&env);
    let mut s = at_new_password(&env, &proj);
    type_secret(&mut s, "pw\r");
    wait_for(&mut s, "Repeat the password");
    type_secret(&mut s, "pw\r");
    wait_for(&mut s, "Leave out");
    wait_for(&mut s, "src");
    send(&mut s, ESC);
    let (rest, code) = finish(s);
    assert_eq!(code, 1, "{rest}");
    assert!(rest.contains("cancelled at the prompt; nothing was written"), "{rest}");
    assert!(
        !env.path("xdg-data/projectclone").exists(),
        "no repository is left behind"
    );
}

#[test]
fn restore_i_picks_a_snapshot_paths_and_a_new_target() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("keep/a.txt"), random_bytes(3, 70_000));
    write(src.join("keep/sub/b.txt"), b"bee\n");
    write(src.join("skip/c.txt"), b"sea\n");
    write(src.join("top.txt"), b"top\n");
    let older = env.backup([&src]);
    write(src.join("keep/a.txt"), b"changed later\n");
    env.backup([src.as_path(), Path::new("--note"), Path::new("newer")]);
    // A non-empty folder offered as the target is refused unless confirmed.
    let busy = env.path("busy");
    write(busy.join("precious.txt"), b"mine\n");
    let target = env.path("out");
    let repo = env.repo();
    let cache = env.cache();
    let args = [
        "-r",
        repo.to_str().unwrap(),
        "--cache-dir",
        cache.to_str().unwrap(),
        "restore",
        "-i",
    ];
    let mut s = spawn(&env, env.root(), &args, Some(PASSWORD));
    let screen = wait_for(&mut s, "Snapshot to restore");
    let _ = screen;
    let screen = wait_for(&mut s, &older[..8]);
    assert!(
        screen.contains("(newer)"),
        "the newest is listed first, with its note:\n{screen}"
    );
    send(&mut s, DOWN);
    send(&mut s, "\r");
    wait_for(&mut s, "Paths to restore");
    wait_for(&mut s, "top.txt");
    send(&mut s, DOWN);
    send(&mut s, " ");
    send(&mut s, "\r");
    let screen = wait_for(&mut s, "Restore into");
    let _ = screen;
    wait_for(&mut s, &format!("restore-{}", &older[..8]));
    send(&mut s, &format!("{}\r", busy.display()));
    wait_for(&mut s, "is not empty");
    send(&mut s, "n");
    wait_for(&mut s, "Restore into");
    send(&mut s, &format!("{}\r", target.display()));
    let (rest, code) = finish(s);
    assert_eq!(code, 0, "{rest}");
    assert!(
        rest.contains(&format!(
            "restore {} --target {} --include /keep --include /top.txt",
            &older[..8],
            target.display()
        )),
        "the equivalent command line:\n{rest}"
    );
    assert_eq!(std::fs::read(busy.join("precious.txt")).unwrap(), b"mine\n");
    assert_eq!(
        std::fs::read_dir(&busy).unwrap().count(),
        1,
        "the refused target is untouched"
    );
    assert_eq!(
        std::fs::read(target.join("keep/a.txt")).unwrap(),
        random_bytes(3, 70_000)
    );
    assert_eq!(std::fs::read(target.join("keep/sub/b.txt")).unwrap(), b"bee\n");
    assert_eq!(std::fs::read(target.join("top.txt")).unwrap(), b"top\n");
    assert!(!target.join("skip").exists(), "the unchosen path is not restored");
}

#[test]
fn without_a_terminal_nothing_prompts() {
    let env = Env::with_repo();
    // No arguments: the usage, as before.
    let out = run(env.bare().write_stdin("")).code(2);
    assert!(out.stderr.contains("Usage: projectclone"), "{}", out.stderr);
    // -i: a usage error naming what to give instead.
    let out = run(env.cmd().args(["backup", "-i"]).write_stdin("")).code(2);
    assert!(
        out.stderr.contains("`backup -i` asks questions on a terminal"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("projectclone backup [PATH]... [--exclude GLOB]..."),
        "{}",
        out.stderr
    );
    let out = run(env.cmd().args(["restore", "-i"]).write_stdin("")).code(2);
    assert!(out.stderr.contains("restore SNAP --target DIR"), "{}", out.stderr);
    assert!(env.snapshots().is_empty(), "nothing was backed up");
    // restore without SNAP and --target, and without -i: clap's usage error.
    let out = run(env.cmd().args(["restore"]).write_stdin("")).code(2);
    assert!(out.stderr.contains("--target"), "{}", out.stderr);
}

#[test]
fn interactive_with_json_is_a_usage_error() {
    let env = Env::with_repo();
    for cmd in ["backup", "restore"] {
        let out = run(env.cmd().args(["--json", cmd, "-i"]).write_stdin("")).code(2);
        let v = out.json();
        assert_eq!(v["message_type"], "exit_error", "{v}");
        assert_eq!(v["code"], 2, "{v}");
        let msg = v["message"].as_str().unwrap();
        assert!(msg.contains(&format!("`{cmd} -i`")) && msg.contains("--json"), "{msg}");
    }
}

#[test]
fn ctrl_c_at_a_prompt_stops_and_creates_nothing() {
    let env = Env::new();
    let proj = project(&env);
    let mut s = at_new_password(&env, &proj);
    send(&mut s, "\x03");
    let (rest, code) = finish(s);
    assert_eq!(code, 130, "{rest}");
    assert!(rest.contains("stopped by SIGINT"), "{rest}");
    assert!(
        !env.path("xdg-data/projectclone").exists(),
        "no repository is left behind"
    );
}

/// The tests' terminal echoes what is typed, as a user's does. With echo left off (the
/// pty library's default) `type_secret` could not see a password prompt take the
/// terminal, and a password typed before the prompt's flush was lost on loaded machines.
#[test]
fn the_test_terminal_echoes_as_a_users_terminal_does() {
    let mut c = StdCommand::new("stty");
    c.arg("-a");
    let (screen, code) = finish(on_pty(c));
    assert_eq!(code, 0, "{screen}");
    let flags: Vec<&str> = screen.split([' ', ';', '\r', '\n']).collect();
    assert!(flags.contains(&"echo"), "echo on:\n{screen}");
    assert!(!flags.contains(&"-echo"), "echo on:\n{screen}");
}
