//! Hooks (`[hooks]`) and notifications (`[[notify]]`, `--notify`) around commands, against
//! a real HTTP server on 127.0.0.1 started by the test.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use crate::util::*;

/// One request the server received.
#[derive(Clone, Debug)]
struct Request {
    path: String,
    content_type: String,
    body: serde_json::Value,
}

/// An HTTP server on 127.0.0.1 that records POSTs and answers each with the next status
/// of `answers` (then 200). It lives as long as the test (its thread ends with the process).
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Request>>>,
}

impl Receiver {
    fn start(answers: Vec<u16>) -> Receiver {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        std::thread::spawn(move || {
            let mut answers = answers.into_iter();
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                let (mut len, mut ct) = (0usize, String::new());
                loop {
                    let mut h = String::new();
                    r.read_line(&mut h).unwrap();
                    let h = h.trim_end();
                    if h.is_empty() {
                        break;
                    }
                    let (k, v) = h.split_once(':').unwrap();
                    match k.to_ascii_lowercase().as_str() {
                        "content-length" => len = v.trim().parse().unwrap(),
                        "content-type" => ct = v.trim().to_string(),
                        _ => {}
                    }
                }
                let mut body = vec![0; len];
                r.read_exact(&mut body).unwrap();
                g.lock().unwrap().push(Request {
                    path,
                    content_type: ct,
                    body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
                });
                let status = answers.next().unwrap_or(200);
                let _ = write!(
                    s,
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
            }
        });
        Receiver { url, got }
    }

    fn requests(&self) -> Vec<Request> {
        self.got.lock().unwrap().clone()
    }
}

#[test]
fn hooks_run_around_backup_with_their_environment() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("a"), b"a");
    let log = env.path("hooks.log");
    user_file(
        &env,
        &format!(
            "[hooks]\npre-backup = \"echo pre $PROJECTCLONE_COMMAND $(pwd) >> {0}; echo to-stdout\"\npost-backup = \"echo post $PROJECTCLONE_SNAPSHOT_ID $PROJECTCLONE_REPO >> {0}\"\non-failure = \"echo failed $PROJECTCLONE_EXIT_CODE >> {0}\"\n",
            log.display()
        ),
    );
    let out = run(env.cmd().args(["--json", "backup"]).arg(&src)).success();
    let id = out.json()["snapshot_id"].as_str().unwrap().to_string();
    // The hook's own output went to stderr; stdout is one JSON document.
    assert!(out.stderr.contains("to-stdout"), "{}", out.stderr);
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], format!("pre backup {}", src.display()));
    assert_eq!(lines[1], format!("post {id} {}", env.repo().display()));
    assert_eq!(lines.len(), 2, "no on-failure: {text}");
    // --no-hooks runs none.
    std::fs::remove_file(&log).unwrap();
    run(env.cmd().args(["--no-hooks", "backup"]).arg(&src)).success();
    assert!(!log.exists());
    // Commands without hooks of their own run none.
    run(env.cmd().arg("snapshots")).success();
    assert!(!log.exists());
}

#[test]
fn a_failing_pre_hook_stops_the_command_and_runs_on_failure() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("a"), b"a");
    let log = env.path("hooks.log");
    user_file(
        &env,
        &format!(
            "[hooks]\npre-backup = \"exit 4\"\npost-backup = \"echo post >> {0}\"\non-failure = \"echo failed $PROJECTCLONE_COMMAND $PROJECTCLONE_EXIT_CODE \\\"$PROJECTCLONE_ERROR\\\" >> {0}\"\n",
            log.display()
        ),
    );
    let packs_before = env.pack_count();
    let out = run(env.cmd().arg("backup").arg(&src)).code(1);
    assert!(
        out.stderr.contains("pre-backup hook \"exit 4\" failed"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("nothing was written"), "{}", out.stderr);
    assert!(env.snapshots().is_empty());
    assert_eq!(env.pack_count(), packs_before);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.starts_with("failed backup 1 pre-backup hook"), "{text}");
    assert!(!text.contains("post"), "{text}");
    // A failing command (not a hook) runs on-failure with its exit code: a wrong password.
    std::fs::remove_file(&log).unwrap();
    user_file(
        &env,
        &format!(
            "[hooks]\non-failure = \"echo failed $PROJECTCLONE_EXIT_CODE >> {}\"\n",
            log.display()
        ),
    );
    run(env.cmd().env("PROJECTCLONE_PASSWORD", "wrong").arg("backup").arg(&src)).code(12);
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "failed 12\n");
}

#[test]
fn a_hook_that_runs_too_long_is_stopped() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("a"), b"a");
    user_file(&env, "[hooks]\ntimeout = \"1s\"\npre-check = \"sleep 30\"\n");
    let t = std::time::Instant::now();
    let out = run(env.cmd().arg("check")).code(1);
    assert!(out.stderr.contains("did not finish within 1s"), "{}", out.stderr);
    assert!(t.elapsed() < std::time::Duration::from_secs(20));
}

#[test]
fn notifications_tell_success_and_failure_in_each_format() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("a"), b"a");
    let json = Receiver::start(vec![]);
    let slack = Receiver::start(vec![]);
    let discord = Receiver::start(vec![]);
    let hc = Receiver::start(vec![]);
    let only_failures = Receiver::start(vec![]);
    user_file(
        &env,
        &format!(
            "[[notify]]\nurl = \"{}/hook\"\n\n[[notify]]\nurl = \"{}/s\"\nformat = \"slack\"\n\n[[notify]]\nurl = \"{}/d\"\nformat = \"discord\"\n\n[[notify]]\nurl = \"{}/ping/abc\"\nformat = \"healthchecks\"\n\n[[notify]]\nurl = \"{}/f\"\non = [\"failure\"]\n",
            json.url, slack.url, discord.url, hc.url, only_failures.url
        ),
    );
    let id = env.backup([&src]);
    let r = json.requests();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].path, "/hook");
    assert_eq!(r[0].content_type, "application/json");
    let b = &r[0].body;
    assert_eq!(b["event"], "success");
    assert_eq!(b["command"], "backup");
    assert_eq!(b["snapshot_id"], id.as_str());
    assert_eq!(b["project"], "src");
    assert_eq!(b["repo"], env.repo().to_str().unwrap());
    assert!(b["error"].is_null());
    assert!(b["stats"].is_object(), "{b}");
    for k in ["host", "started", "finished", "duration"] {
        assert!(!b[k].is_null(), "{k}: {b}");
    }
    let text = slack.requests()[0].body["text"].as_str().unwrap().to_string();
    assert!(
        text.contains("backup") && text.contains("succeeded") && !text.contains('\n'),
        "{text}"
    );
    assert!(
        discord.requests()[0].body["content"]
            .as_str()
            .unwrap()
            .contains("succeeded")
    );
    let paths: Vec<String> = hc.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, ["/ping/abc/start", "/ping/abc"]);
    assert!(only_failures.requests().is_empty());
    // A failure: a wrong password.
    run(env.cmd().env("PROJECTCLONE_PASSWORD", "wrong").arg("check")).code(12);
    let r = json.requests();
    assert_eq!(r.len(), 2);
    assert_eq!(r[1].body["event"], "failure");
    assert_eq!(r[1].body["command"], "check");
    assert_eq!(r[1].body["exit_code"], 12);
    assert!(
        r[1].body["error"].as_str().unwrap().contains("password"),
        "{}",
        r[1].body
    );
    assert!(slack.requests()[1].body["text"].as_str().unwrap().contains("FAILED"));
    assert_eq!(hc.requests()[3].path, "/ping/abc/fail");
    assert_eq!(only_failures.requests().len(), 1);
    // `snapshots` sends nothing.
    run(env.cmd().arg("snapshots")).success();
    assert_eq!(json.requests().len(), 2);
}

#[test]
fn a_notification_is_retried_and_its_failure_never_changes_the_outcome() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(src.join("a"), b"a");
    // 503 twice, then 200: delivered on the third try.
    let flaky = Receiver::start(vec![503, 503]);
    let out = run(env
        .cmd()
        .arg("--notify")
        .arg(format!("{}/n", flaky.url))
        .arg("backup")
        .arg(&src))
    .success();
    assert_eq!(flaky.requests().len(), 3, "{}", out.stderr);
    assert!(!out.stderr.contains("could not be sent"), "{}", out.stderr);
    // Always 500: a warning, exit 0, the snapshot saved.
    let broken = Receiver::start(vec![500; 10]);
    user_file(
        &env,
        &format!("[[notify]]\nurl = \"{}/secret-token\"\nretries = 1\n", broken.url),
    );
    let out = run(env.cmd().arg("backup").arg(&src)).success();
    assert_eq!(broken.requests().len(), 2);
    assert!(out.stderr.contains("could not be sent"), "{}", out.stderr);
    assert!(
        !out.stderr.contains("secret-token"),
        "the URL's path may be a secret: {}",
        out.stderr
    );
    // Nobody listening: a warning too, quickly.
    user_file(
        &env,
        "[[notify]]\nurl = \"http://127.0.0.1:9/x\"\nretries = 0\ntimeout = \"2s\"\n",
    );
    let out = run(env.cmd().arg("backup").arg(&src)).success();
    assert!(out.stderr.contains("could not be sent"), "{}", out.stderr);
    assert_eq!(env.snapshots().len(), 3);
    run(env.cmd().args(["check", "--read-data"])).success();
}
