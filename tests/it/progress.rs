//! Progress (README "Progress and status lines"): `--json-status` status lines on stdout
//! for backup, restore, check, prune, copy, export and import, then the result as one
//! `summary` line; plain `--json` still one document; a bar on a terminal stderr and
//! nothing when stderr is redirected or with `-q`; `-v` lists what restore and export
//! write.

use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;

use serde_json::Value;

use crate::beyond::{pty, std_cmd};
use crate::util::*;

/// More than twice the largest chunk (8 MiB): at least three chunks whatever the keyed
/// chunker cuts, so some event always lands inside the file (3 MiB was one chunk now and
/// then, and the test failed).
const BIG: usize = 17 * 1024 * 1024 + 7;

/// `src/` with `a.txt`, a 17 MiB `big.bin` (several chunks) and `d/b.txt`; the total size.
fn source(env: &Env) -> (std::path::PathBuf, u64) {
    let src = env.path("src");
    write(src.join("a.txt"), b"alpha\n");
    write(src.join("big.bin"), random_bytes(7, BIG));
    write(src.join("d/b.txt"), b"beta beta\n");
    (src, (6 + BIG + 10) as u64)
}

fn n(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("{k} is not a count in {v}"))
}

/// Run with `--json-status` (a status line per event) expecting `code`: every stdout line
/// is a JSON object, status lines first (counts that never go back and never pass their
/// totals), the summary last. Returns (status lines, summary).
#[track_caller]
fn with_status(env: &Env, args: &[&OsStr], code: i32) -> (Vec<Value>, Value) {
    let mut c = env.cmd();
    c.env("PROJECTCLONE_STATUS_INTERVAL_MS", "0")
        .env("PROJECTCLONE_TO_PASSWORD", PASSWORD)
        .arg("--json-status")
        .args(args);
    let out = run(&mut c).code(code);
    let lines: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l:?}")))
        .collect();
    let (summary, status) = lines.split_last().expect("a summary line");
    assert_eq!(summary["message_type"], "summary", "last line: {summary}");
    assert!(!status.is_empty(), "no status line before the summary:\n{}", out.stdout);
    let (mut bytes, mut files) = (0, 0);
    for s in status {
        assert_eq!(s["message_type"], "status", "{s}\n{}", out.stdout);
        let (b, f) = (n(s, "bytes_done"), n(s, "files_done"));
        assert!(b >= bytes && f >= files, "counts went back: {s}\n{}", out.stdout);
        (bytes, files) = (b, f);
        assert!(b <= n(s, "total_bytes") && f <= n(s, "total_files"), "{s}");
        n(s, "error_count");
        let p = s["percent_done"].as_f64().expect("percent_done");
        assert!((0.0..=1.0).contains(&p), "{s}");
        assert!(s["seconds_elapsed"].as_f64().is_some(), "{s}");
        assert!(s["current_files"].is_array(), "{s}");
    }
    (status.to_vec(), summary.clone())
}

/// The last status line's counts: (files done, total files, bytes done, total bytes).
fn last_counts(status: &[Value]) -> (u64, u64, u64, u64) {
    let s = status.last().expect("a status line");
    (
        n(s, "files_done"),
        n(s, "total_files"),
        n(s, "bytes_done"),
        n(s, "total_bytes"),
    )
}

/// Some status line was printed while `big.bin` was half done: progress moves within a file.
#[track_caller]
fn moved_within_big_file(status: &[Value], before: u64) {
    assert!(
        status.iter().any(|s| {
            let b = n(s, "bytes_done");
            b > before + 1000 && b < before + BIG as u64 - 1000
        }),
        "no status line inside big.bin: {status:#?}"
    );
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

#[test]
fn backup_status_lines_count_as_the_walk_goes_and_end_with_the_summary() {
    let env = Env::with_repo();
    let (src, total) = source(&env);
    let (status, summary) = with_status(&env, &[os("backup"), src.as_os_str()], 0);
    assert_eq!(last_counts(&status), (3, 3, total, total));
    moved_within_big_file(&status, 6);
    // The total grows while it is counted: it starts below the end's.
    assert!(status.iter().any(|s| n(s, "total_files") < 3 && s["scanning"] == true));
    assert_eq!(status.last().unwrap()["scanning"], false);
    let id = summary["snapshot_id"].as_str().expect("snapshot id in the summary");
    assert_id_line(&format!("{id}\n"));
    assert_eq!(n(&summary, "files_new"), 3);
    assert_eq!(n(&summary, "data_read"), total);
    assert_eq!(env.snapshots()[0]["id"], id);

    // Plain --json: exactly one document, no status lines.
    write(src.join("c.txt"), b"more\n");
    let doc = env.backup_json([&src]);
    assert!(doc.get("message_type").is_none(), "{doc}");
    assert_eq!(n(&doc, "files_new"), 1);
}

/// With status lines shown, a backup counts its sources on a thread of its own, with the
/// walk's own rules: once the count is done its totals are the final counts, and status
/// lines carry an ETA.
#[test]
fn backup_counts_its_totals_with_the_walks_rules_then_shows_an_eta() {
    let env = Env::with_repo();
    let src = env.path("src");
    let big = BIG - 4; // several chunks: reads go on after the count
    write(src.join("big.bin"), random_bytes(11, big));
    write(src.join("keep/a.txt"), b"kept\n");
    write(src.join("keep/skip.log"), b"left out by --exclude\n");
    write(src.join("keep/.projectcloneignore"), b"ignored/\n*.tmp\n");
    write(src.join("keep/ignored/x"), vec![1u8; 5000]);
    write(src.join("keep/y.tmp"), vec![2u8; 7000]);
    write(
        src.join("cache/CACHEDIR.TAG"),
        b"Signature: 8a477f597d28d172789f06886806bc55\n",
    );
    write(src.join("cache/junk"), vec![3u8; 9000]);
    write(src.join("huge.bin"), vec![4u8; 20 * 1024 * 1024]);
    // Kept: big.bin, keep/a.txt, keep/.projectcloneignore, cache/CACHEDIR.TAG.
    let want_files = 4;
    let want_bytes = (big + "kept\n".len() + "ignored/\n*.tmp\n".len() + 44) as u64;
    let (status, summary) = with_status(
        &env,
        &[
            os("backup"),
            os("--exclude"),
            os("*.log"),
            os("--exclude-caches"),
            os("--exclude-larger-than"),
            os("18MiB"),
            src.as_os_str(),
        ],
        0,
    );
    assert_eq!(last_counts(&status), (want_files, want_files, want_bytes, want_bytes));
    assert_eq!(n(&summary, "files_new"), want_files, "{summary}");
    // The first line after the count: the totals are complete.
    let counted = status
        .iter()
        .position(|s| s["scanning"] == false)
        .expect("a line after the count");
    let s = &status[counted];
    assert_eq!(
        (n(s, "total_files"), n(s, "total_bytes")),
        (want_files, want_bytes),
        "{s}"
    );
    for s in &status[counted..] {
        assert_eq!(s["scanning"], false, "scanning again: {s}");
        assert_eq!(
            (n(s, "total_files"), n(s, "total_bytes")),
            (want_files, want_bytes),
            "{s}"
        );
    }
    // While big.bin is read: a percentage and the seconds remaining.
    assert!(
        status[counted..].iter().any(|s| {
            let p = s["percent_done"].as_f64().unwrap();
            p > 0.0 && p < 1.0 && s["seconds_remaining"].as_u64().is_some()
        }),
        "no line with an ETA after the count: {status:#?}"
    );
}

/// The status lines come at the interval even when no event does (a silent input), and
/// none comes after the summary.
#[test]
fn status_lines_keep_coming_while_nothing_happens() {
    use std::io::{BufRead, BufReader, Write};
    let env = Env::with_repo();
    let mut child = std_cmd(&env)
        .env("PROJECTCLONE_STATUS_INTERVAL_MS", "0")
        .args(["--json-status", "backup", "--stdin", "--stdin-name", "slow.txt"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary runs");
    let mut input = child.stdin.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let _ = tx.send(line.clone());
        }
    });
    let mut lines = Vec::new();
    // The input stays silent: only the timer prints lines now. (The limit only keeps a
    // broken build from hanging the test.)
    let limit = std::time::Duration::from_secs(120);
    while lines.len() < 10 {
        lines.push(rx.recv_timeout(limit).expect("status lines while the input is silent"));
    }
    input.write_all(b"finally some data\n").unwrap();
    drop(input);
    assert!(child.wait().unwrap().success());
    reader.join().unwrap();
    lines.extend(rx.try_iter());
    let docs: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l:?}")))
        .collect();
    let (summary, status) = docs.split_last().unwrap();
    assert_eq!(summary["message_type"], "summary", "last line: {summary}");
    assert!(summary["snapshot_id"].is_string(), "{summary}");
    for s in status {
        assert_eq!(s["message_type"], "status", "{s}");
    }
    // The first ten lines were printed before any byte came.
    assert!(status[..10].iter().all(|s| n(s, "bytes_done") == 0), "{status:#?}");
    assert_eq!(n(status.last().unwrap(), "bytes_done"), 18);
}

#[test]
fn backup_status_keeps_exit_code_3_and_counts_the_unreadable_file() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("ok.txt"), b"readable\n");
    write(src.join("secret.txt"), b"not readable\n");
    for p in [env.root(), &env.repo(), &env.cache(), &src] {
        world_accessible(p);
    }
    fs::set_permissions(env.root(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(src.join("secret.txt"), fs::Permissions::from_mode(0o000)).unwrap();
    let out = run(env
        .cmd_as_nobody()
        .env("PROJECTCLONE_STATUS_INTERVAL_MS", "0")
        .args(["--json-status", "backup"])
        .arg(&src))
    .code(3);
    let lines: Vec<Value> = out.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let (summary, status) = lines.split_last().unwrap();
    assert_eq!(summary["message_type"], "summary");
    assert_eq!(n(summary, "errors"), 1, "{summary}");
    assert!(summary["snapshot_id"].is_string(), "{summary}");
    assert_eq!(n(status.last().unwrap(), "error_count"), 1, "{}", out.stdout);
}

#[test]
fn restore_status_lines_reach_the_plan_totals() {
    let env = Env::with_repo();
    let (src, total) = source(&env);
    env.backup([&src]);
    let out = env.path("out");
    let (status, summary) = with_status(&env, &[os("restore"), os("latest"), os("--target"), out.as_os_str()], 0);
    assert_eq!(last_counts(&status), (3, 3, total, total));
    assert_eq!(
        n(&status[0], "total_bytes"),
        total,
        "the plan's total from the first line"
    );
    moved_within_big_file(&status, 0);
    assert_eq!(n(&summary, "files"), 3);
    assert_eq!(
        fs::read(out.join("big.bin")).unwrap(),
        fs::read(src.join("big.bin")).unwrap()
    );

    let doc = run(env
        .cmd()
        .args(["--json", "restore", "latest", "--target"])
        .arg(env.path("out2")))
    .success()
    .json();
    assert!(doc.get("message_type").is_none(), "{doc}");
    assert_eq!(n(&doc, "files"), 3);
}

#[test]
fn check_read_data_status_counts_every_pack() {
    let env = Env::with_repo();
    let (src, _) = source(&env);
    env.backup([&src]);
    let (status, summary) = with_status(&env, &[os("check"), os("--read-data")], 0);
    let packs = env.pack_count() as u64;
    let (files, total_files, bytes, total_bytes) = last_counts(&status);
    assert_eq!((files, total_files), (packs, packs));
    let sizes: Vec<u64> = files_under(&env.repo().join("packs"))
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .collect();
    let on_disk: u64 = sizes.iter().sum();
    assert_eq!((bytes, total_bytes), (on_disk, on_disk));
    // The count moves within a pack (per blob verified), not only per pack: more
    // distinct byte counts than a count per pack could print.
    let distinct: std::collections::BTreeSet<u64> = status.iter().map(|s| n(s, "bytes_done")).collect();
    assert!(distinct.len() > sizes.len() + 1, "{distinct:?}, packs {sizes:?}");
    assert_eq!(n(status.last().unwrap(), "error_count"), 0);
    assert_eq!(summary["ok"], true, "{summary}");

    let doc = run(env.cmd().args(["--json", "check", "--read-data"])).success().json();
    assert!(doc.get("message_type").is_none(), "{doc}");
}

#[test]
fn prune_status_counts_the_packs_it_deletes() {
    let env = Env::with_repo();
    let (src, _) = source(&env);
    env.backup([&src]);
    fs::remove_file(src.join("big.bin")).unwrap();
    env.backup([&src]);
    let before = env.pack_count();
    let (status, summary) = with_status(&env, &[os("prune"), os("--keep-last"), os("1")], 0);
    let gone = before - env.pack_count();
    assert!(gone > 0, "prune deleted no pack");
    let (files, total_files, _, _) = last_counts(&status);
    // Each pack rewritten or deleted is one entry.
    assert_eq!(files, total_files);
    assert!(files >= gone as u64, "{status:#?}");
    assert_eq!(summary["dry_run"], false, "{summary}");
    assert_eq!(env.snapshots().len(), 1);
}

#[test]
fn copy_status_counts_the_files_of_the_snapshots_copied() {
    let env = Env::with_repo();
    let (src, total) = source(&env);
    env.backup([&src]);
    let other = env.path("other");
    run(env
        .cmd_at(&other)
        .args(["init", "--kdf-memory", "1024", "--kdf-time", "1", "--weak-kdf"]))
    .success();
    let (status, summary) = with_status(&env, &[os("copy"), os("latest"), os("--to"), other.as_os_str()], 0);
    assert_eq!(last_counts(&status), (3, 3, total, total));
    moved_within_big_file(&status, 6);
    assert_eq!(summary["copied"].as_array().map(Vec::len), Some(1), "{summary}");
}

#[test]
fn export_status_lines_and_one_document_with_plain_json() {
    let env = Env::with_repo();
    let (src, total) = source(&env);
    env.backup([&src]);
    let tar = env.path("x.tar.gz");
    let (status, summary) = with_status(&env, &[os("export"), os("latest"), os("--archive"), tar.as_os_str()], 0);
    assert_eq!(last_counts(&status), (3, 3, total, total));
    moved_within_big_file(&status, 6);
    assert_eq!(n(&summary, "files"), 3);

    let doc = run(env
        .cmd()
        .args(["--json", "export", "latest", "--clone"])
        .arg(env.path("clone")))
    .success()
    .json();
    assert!(doc.get("message_type").is_none(), "{doc}");
    assert_eq!(n(&doc, "files"), 3);
}

#[test]
fn import_status_lines_then_the_results_as_the_summary() {
    let env = Env::with_repo();
    let folder = env.path("project_backups/2024-01-01_000000-app");
    write(folder.join("a.txt"), b"a\n");
    write(folder.join("sub/b.txt"), b"bb\n");
    let (status, summary) = with_status(&env, &[os("import"), folder.as_os_str()], 0);
    assert_eq!(last_counts(&status), (2, 2, 5, 5));
    let results = summary["results"].as_array().expect("results");
    assert_eq!(results.len(), 1, "{summary}");
    assert_eq!(n(&results[0], "files_new"), 2);
    assert!(results[0]["snapshot_id"].is_string());
}

/// Run `args` with stderr on a pseudo-terminal (160 columns); (exit code, what the
/// terminal received).
fn on_terminal(env: &Env, args: &[&OsStr]) -> (i32, String) {
    let (mut master, slave) = pty();
    let ws = libc::winsize {
        ws_row: 40,
        ws_col: 160,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which outlives the call.
    assert_eq!(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) }, 0);
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        // Ends with EIO once the child's end is closed.
        while let Ok(k) = master.read(&mut buf) {
            if k == 0 {
                break;
            }
            got.extend_from_slice(&buf[..k]);
        }
        String::from_utf8_lossy(&got).into_owned()
    });
    let mut c = std_cmd(env);
    c.env("TERM", "xterm")
        .env_remove("NO_COLOR")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(slave));
    let status = c.status().expect("the binary runs");
    drop(c); // closes our copy of the terminal's other end
    (status.code().unwrap_or(-1), reader.join().unwrap())
}

#[test]
fn a_terminal_shows_a_bar_with_rate_total_and_eta_and_nothing_else_does() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("four.bin"), random_bytes(9, 4 * 1024 * 1024));
    let (code, tty) = on_terminal(&env, &[os("backup"), src.as_os_str()]);
    assert_eq!(code, 0, "{tty}");
    // The count of the totals ends soon: then a percentage, a rate and an ETA.
    for want in ["4.00 MiB", "/s", "ETA", "1/1 files"] {
        assert!(tty.contains(want), "{want:?} not on the terminal: {tty:?}");
    }

    let (code, tty) = on_terminal(
        &env,
        &[os("restore"), os("latest"), os("--target"), env.path("out").as_os_str()],
    );
    assert_eq!(code, 0, "{tty}");
    for want in ["4.00 MiB", "/s", "ETA", "/1 files", "restored snapshot"] {
        assert!(tty.contains(want), "{want:?} not on the terminal: {tty:?}");
    }

    // -q: nothing at all on the terminal.
    let (code, tty) = on_terminal(
        &env,
        &[
            os("-q"),
            os("restore"),
            os("latest"),
            os("--target"),
            env.path("out-q").as_os_str(),
        ],
    );
    assert_eq!(code, 0);
    assert_eq!(tty, "", "-q drew on the terminal");

    // stderr redirected to a file: the summary, no progress.
    let log = env.path("stderr.log");
    let status = std_cmd(&env)
        .args(["restore", "latest", "--target"])
        .arg(env.path("out-file"))
        .stdout(Stdio::null())
        .stderr(Stdio::from(fs::File::create(&log).unwrap()))
        .status()
        .unwrap();
    assert!(status.success());
    let text = fs::read_to_string(&log).unwrap();
    assert!(text.contains("restored snapshot"), "{text}");
    for not in ["/s", "ETA", "\r", "\x1b"] {
        assert!(!text.contains(not), "{not:?} in a redirected stderr: {text:?}");
    }
}

/// `path` of each `-v` line with message id `id` (through `--log-json`).
fn written(stderr: &str, id: &str) -> std::collections::BTreeSet<String> {
    stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["id"] == id)
        .map(|v| v["path"].as_str().expect("a path field").to_string())
        .collect()
}

#[test]
fn verbose_restore_and_export_list_each_entry_written() {
    let env = Env::with_repo();
    let (src, _) = source(&env);
    std::os::unix::fs::symlink("a.txt", src.join("link")).unwrap();
    env.backup([&src]);
    let entries: std::collections::BTreeSet<String> = ["a.txt", "big.bin", "d", "d/b.txt", "link"]
        .iter()
        .map(|s| s.to_string())
        .collect();

    let out = run(env
        .cmd()
        .args(["-v", "--log-json", "restore", "latest", "--target"])
        .arg(env.path("out")))
    .success();
    assert_eq!(written(&out.stderr, "restore.written"), entries, "{}", out.stderr);
    // Plain text too, one line each.
    let out = run(env
        .cmd()
        .args(["-v", "restore", "latest", "--target"])
        .arg(env.path("out2")))
    .success();
    assert!(out.stderr.contains("restored: d/b.txt\n"), "{}", out.stderr);
    // Not without -v.
    let out = run(env.cmd().args(["restore", "latest", "--target"]).arg(env.path("out3"))).success();
    assert!(!out.stderr.contains("restored: "), "{}", out.stderr);

    let tar = env.path("x.tar");
    let out = run(env
        .cmd()
        .args(["-v", "--log-json", "export", "latest", "--archive"])
        .arg(&tar))
    .success();
    let members: std::collections::BTreeSet<String> = entries.iter().map(|e| format!("src/{e}")).collect();
    assert_eq!(written(&out.stderr, "export.written"), members, "{}", out.stderr);
    let out = run(env
        .cmd()
        .args(["-v", "--log-json", "export", "latest", "--clone"])
        .arg(env.path("clone")))
    .success();
    assert_eq!(written(&out.stderr, "export.written"), entries, "{}", out.stderr);
    assert!(Path::new(&env.path("clone/d/b.txt")).exists());
}
