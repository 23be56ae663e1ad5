//! What runs around a command: the `[hooks]` of the config files (`pre-COMMAND`,
//! `post-COMMAND`, `on-failure`) and the notifications (`[[notify]]`, `--notify URL`).
//!
//! A pre hook that fails stops the command before it opens the repository. A post hook runs
//! when the command finished its work (a backup with unreadable files too: its snapshot is
//! saved); one that fails makes the command fail. `on-failure` runs whenever the exit code
//! is not 0. Notifications go last, one POST per endpoint; a notification that cannot be
//! delivered is a warning and never changes the exit code.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Result, anyhow, bail};
use serde_json::json;

use super::config::{Hooks, Notify};

/// The commands hooks run around.
pub const HOOKED: &[&str] = &["backup", "restore", "prune", "check", "export"];

/// The commands that send notifications (the ones that do work worth hearing about).
pub const NOTIFIED: &[&str] = &[
    "backup", "restore", "prune", "forget", "check", "export", "import", "copy", "repair", "init",
];

/// Default time one notification request may take.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(10);
/// Default tries after the first.
const NOTIFY_RETRIES: u32 = 3;

/// How a command ended, for the post hooks and notifications.
pub struct Outcome<'a> {
    pub code: u8,
    /// The error, when it failed.
    pub error: Option<String>,
    pub snapshot_id: Option<&'a str>,
    /// The command's figures (its `--json` summary), when it has some.
    pub stats: Option<&'a serde_json::Value>,
}

/// Hooks and notifications of one run.
pub struct Around {
    pub command: &'static str,
    pub hooks: Option<Hooks>,
    pub notify: Vec<Notify>,
    /// Where hooks run: the project directory.
    pub dir: PathBuf,
    /// The repository, as printed (no credentials).
    pub repo: String,
    pub host: String,
    pub project: String,
    pub started: SystemTime,
    pub quiet: bool,
}

impl Around {
    /// Run the pre hook of this command, if any.
    pub fn pre(&self) -> Result<()> {
        let Some(h) = self.hook("pre") else { return Ok(()) };
        self.run_hook(&format!("pre-{}", self.command), h, &[])
            .map_err(|e| anyhow!("{e}; the {} was not run, nothing was written", self.command))
    }

    /// Run the post hook (when the command did its work, `Ok`) or `on-failure`.
    pub fn post(&self, o: &Outcome) -> Result<()> {
        let mut env: Vec<(&str, String)> = Vec::new();
        if let Some(id) = o.snapshot_id {
            env.push(("PROJECTCLONE_SNAPSHOT_ID", id.to_string()));
        }
        if o.error.is_none()
            && let Some(h) = self.hook("post")
        {
            self.run_hook(&format!("post-{}", self.command), h, &env)?;
        }
        Ok(())
    }

    /// Run `on-failure` (any exit code but 0).
    pub fn on_failure(&self, o: &Outcome) {
        let Some(h) = self.hooks.as_ref().and_then(|h| h.on_failure.as_deref()) else {
            return;
        };
        let mut env: Vec<(&str, String)> = vec![("PROJECTCLONE_EXIT_CODE", o.code.to_string())];
        if let Some(e) = &o.error {
            env.push(("PROJECTCLONE_ERROR", e.clone()));
        }
        if let Some(id) = o.snapshot_id {
            env.push(("PROJECTCLONE_SNAPSHOT_ID", id.to_string()));
        }
        if let Err(e) = self.run_hook("on-failure", h, &env)
            && !self.quiet
        {
            super::report::warning("hook.failed", &format!("{e:#}"), &[]);
        }
    }

    fn hook(&self, when: &str) -> Option<&str> {
        if !HOOKED.contains(&self.command) {
            return None;
        }
        self.hooks.as_ref().and_then(|h| h.get(when, self.command))
    }

    /// `sh -c cmd` in the project directory, its output on stderr, stopped after the
    /// hooks' timeout.
    fn run_hook(&self, name: &str, cmd: &str, env: &[(&str, String)]) -> Result<()> {
        use std::os::unix::process::CommandExt;
        let timeout = self
            .hooks
            .as_ref()
            .map_or(super::config::DEFAULT_HOOK_TIMEOUT, Hooks::timeout);
        // Its output goes to stderr: stdout is for this command's results (`--json`).
        let stdout = {
            use std::os::fd::AsFd;
            std::io::stderr()
                .as_fd()
                .try_clone_to_owned()
                .map(Stdio::from)
                .unwrap_or_else(|_| Stdio::null())
        };
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(cmd)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(stdout)
            .env("PROJECTCLONE_COMMAND", self.command)
            .env("PROJECTCLONE_REPO", &self.repo)
            // Its own process group, so a timeout stops what it started too.
            .process_group(0);
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c
            .spawn()
            .map_err(|e| anyhow!("{name} hook {cmd:?} could not be started: {e}"))?;
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = child.try_wait()? {
                break s;
            }
            if Instant::now() >= deadline {
                let pgid = rustix::process::Pid::from_child(&child);
                let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
                let _ = child.wait();
                bail!(
                    "{name} hook {cmd:?} did not finish within {} and was stopped (raise [hooks] timeout)",
                    humantime::format_duration(timeout)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if !status.success() {
            bail!("{name} hook {cmd:?} failed ({status})");
        }
        Ok(())
    }

    /// Tell the `healthchecks` endpoints that the command starts (`URL/start`), so a run
    /// that hangs or never ends is noticed too.
    pub fn start(&self) {
        if !NOTIFIED.contains(&self.command) {
            return;
        }
        for n in self
            .notify
            .iter()
            .filter(|n| n.plugin.is_none() && n.format.as_deref() == Some("healthchecks"))
        {
            let url = format!("{}/start", n.url.trim_end_matches('/'));
            if let Err(e) = post(&url, &json!({}), NOTIFY_TIMEOUT.min(Duration::from_secs(5)), 0)
                && !self.quiet
            {
                super::report::warning(
                    "notify.start_failed",
                    &format!("the healthchecks start ping could not be sent ({e:#})"),
                    &[],
                );
            }
        }
    }

    /// Tell every endpoint how the command ended. Failures are warnings.
    pub fn send(&self, o: &Outcome) {
        if self.notify.is_empty() || !NOTIFIED.contains(&self.command) {
            return;
        }
        let success = o.code == 0;
        let finished = SystemTime::now();
        let when = |t: SystemTime| humantime::format_rfc3339_seconds(t).to_string();
        let duration = finished.duration_since(self.started).unwrap_or_default().as_secs_f64();
        let summary = self.summary(o, duration);
        for n in &self.notify {
            let on = n.on.clone().unwrap_or_else(|| vec!["success".into(), "failure".into()]);
            if !on.iter().any(|e| e == if success { "success" } else { "failure" }) {
                continue;
            }
            let event = json!({
                "event": if success { "success" } else { "failure" },
                "command": self.command,
                "repo": self.repo,
                "host": self.host,
                "project": self.project,
                "snapshot_id": o.snapshot_id,
                "started": when(self.started),
                "finished": when(finished),
                "duration": duration,
                "exit_code": o.code,
                "stats": o.stats,
                "error": o.error,
                "summary": summary,
            });
            let timeout = n
                .timeout
                .as_deref()
                .and_then(|t| humantime::parse_duration(t).ok())
                .unwrap_or(NOTIFY_TIMEOUT);
            let retries = n.retries.unwrap_or(NOTIFY_RETRIES);
            if let Some(name) = &n.plugin {
                if let Err(e) = notify_plugin(name, &event, timeout, retries)
                    && !self.quiet
                {
                    super::report::warning(
                        "notify.failed",
                        &format!(
                            "the notifier plugin {PLUGIN_PREFIX}{name} could not deliver the event ({e:#}); the {} itself {}",
                            self.command,
                            if success { "succeeded" } else { "failed, as reported" }
                        ),
                        &[("plugin", name.clone().into())],
                    );
                }
                continue;
            }
            let format = n.format.as_deref().unwrap_or("json");
            let mut url = n.url.clone();
            let body = match format {
                "slack" => json!({ "text": summary }),
                "discord" => json!({ "content": summary }),
                "healthchecks" => {
                    if !success {
                        url = format!("{}/fail", url.trim_end_matches('/'));
                    }
                    json!({ "text": summary })
                }
                _ => {
                    let mut e = event.clone();
                    e.as_object_mut().expect("an object").remove("summary");
                    e
                }
            };
            if let Err(e) = post(&url, &body, timeout, retries)
                && !self.quiet
            {
                // The URL may hold a secret (a webhook token): name only its host.
                let host = url::Url::parse(&url)
                    .ok()
                    .and_then(|u| u.host_str().map(String::from))
                    .unwrap_or_default();
                super::report::warning(
                    "notify.failed",
                    &format!(
                        "the {format} notification to {host} could not be sent ({e:#}); the {} itself {}",
                        self.command,
                        if success { "succeeded" } else { "failed, as reported" }
                    ),
                    &[("host", host.clone().into())],
                );
            }
        }
    }

    /// One line for people: what ran, where, how it ended.
    fn summary(&self, o: &Outcome, duration: f64) -> String {
        let what = format!("projectclone {} of {} on {}", self.command, self.project, self.host);
        match (&o.error, o.code) {
            (None, 0) => format!(
                "{what} succeeded in {duration:.1} s{} (repository {})",
                o.snapshot_id
                    .map(|s| format!(": snapshot {}", &s[..s.len().min(8)]))
                    .unwrap_or_default(),
                self.repo
            ),
            (None, 3) => format!(
                "{what} saved snapshot {} but some files could not be read (exit 3; repository {})",
                o.snapshot_id.map(|s| &s[..s.len().min(8)]).unwrap_or("?"),
                self.repo
            ),
            (e, code) => format!(
                "{what} FAILED (exit {code}): {} (repository {})",
                e.as_deref().unwrap_or("see its log"),
                self.repo
            ),
        }
    }
}

/// Program names of notifier plugins: this prefix + the `plugin` name.
pub const PLUGIN_PREFIX: &str = "projectclone-notify-";
/// The notifier plugin protocol this build speaks.
pub const NOTIFY_PROTOCOL: u32 = 1;

/// Hand `event` to `projectclone-notify-NAME` (format-spec §19 has the store plugins; this
/// one is README's "Notifier plugins"): it reads `projectclone-notify 1` and the event as
/// one JSON line on stdin, and answers `ok` (or `error MESSAGE`) on stdout and exits 0.
/// A plugin that fails, answers anything else or runs past `timeout` is tried again (the
/// backoff of [`post`]), `retries` times at most.
fn notify_plugin(name: &str, event: &serde_json::Value, timeout: Duration, retries: u32) -> Result<()> {
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};
    let program = projectclone::backend::plugin::find_program(&format!("{PLUGIN_PREFIX}{name}"))
        .ok_or_else(|| anyhow!("no program {PLUGIN_PREFIX}{name} on PATH"))?;
    let input = format!("projectclone-notify {NOTIFY_PROTOCOL}\n{event}\n");
    let mut delay = Duration::from_millis(500);
    let mut tries = 0;
    loop {
        tries += 1;
        let attempt = || -> Result<()> {
            let mut child = Command::new(&program)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| anyhow!("cannot run {}: {e}", program.display()))?;
            // Small: one line, taken by the pipe's buffer whatever the plugin does.
            let mut stdin = child.stdin.take().expect("piped");
            let _ = stdin.write_all(input.as_bytes());
            drop(stdin);
            let start = std::time::Instant::now();
            let status = loop {
                if let Some(s) = child.try_wait()? {
                    break s;
                }
                if start.elapsed() > timeout {
                    let _ = child.kill();
                    let _ = child.wait();
                    bail!("no answer within {}", humantime::format_duration(timeout));
                }
                std::thread::sleep(Duration::from_millis(10));
            };
            let (mut out, mut err) = (String::new(), String::new());
            let _ = child
                .stdout
                .take()
                .expect("piped")
                .take(64 * 1024)
                .read_to_string(&mut out);
            let _ = child
                .stderr
                .take()
                .expect("piped")
                .take(64 * 1024)
                .read_to_string(&mut err);
            let answer = out.lines().next().unwrap_or("");
            if status.success() && answer == "ok" {
                return Ok(());
            }
            let said = answer
                .strip_prefix("error ")
                .map(String::from)
                .or_else(|| err.lines().last().map(String::from))
                .unwrap_or_else(|| format!("answered {answer:?}"));
            bail!("{said} ({status})")
        };
        match attempt() {
            Ok(()) => return Ok(()),
            Err(e) if tries > retries => return Err(anyhow!("{e:#} (tried {tries} times)")),
            Err(_) => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// POST `body` as JSON; tried again (backoff from 0.5 s, doubling) on a connection error,
/// a timeout or an answer of 429 or 5xx, `retries` times at most.
fn post(url: &str, body: &serde_json::Value, timeout: Duration, retries: u32) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let client = reqwest::Client::builder().timeout(timeout).build()?;
        let mut delay = Duration::from_millis(500);
        let mut tries = 0;
        loop {
            tries += 1;
            let res = client
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(serde_json::to_vec(body)?)
                .send()
                .await;
            let err = match res {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => {
                    let status = r.status();
                    let transient = status.as_u16() == 429 || status.is_server_error();
                    let e = anyhow!("the server answered {status}");
                    if !transient {
                        return Err(e);
                    }
                    e
                }
                Err(e) => anyhow!("{}", without_url(&e)),
            };
            if tries > retries {
                return Err(anyhow!("{err} (tried {tries} times)"));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    })
}

/// A request error without the URL reqwest puts in it (it may hold a token).
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut last = None;
    while let Some(s) = source {
        last = Some(s.to_string());
        source = s.source();
    }
    match last {
        Some(l) => format!("{kind}: {l}"),
        None => kind.to_string(),
    }
}

/// The project's name: the base name of its directory.
pub fn project_name(dir: &Path) -> String {
    std::path::absolute(dir)
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "/".to_string())
}
