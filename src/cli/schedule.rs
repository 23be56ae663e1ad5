//! `schedule install|remove|status`: unattended backups of one directory. With a systemd
//! user instance, a service and a timer in `$XDG_CONFIG_HOME/systemd/user` (default
//! `~/.config/systemd/user`): `projectclone-backup.service` runs the backup (then `prune`
//! with `--prune`), `projectclone-backup.timer` starts it (`Persistent=true`: a run missed
//! while the machine was off happens at the next boot). Without one, a crontab line tagged
//! with [`CRON_MARKER`]. `remove` takes away exactly what `install` wrote; installing again
//! replaces it (one timer, one crontab line).
//!
//! The unattended run sees neither this shell's environment nor a terminal, so the unit
//! carries what decides which repository and settings it uses: the global flags given here
//! (`-r`, `--password-file`, `--cache-dir`, ...), `PROJECTCLONE_PROFILE` for `-P`, and the
//! `XDG_*` folders when they are set. Secrets (`PROJECTCLONE_PASSWORD`) are never written.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};

use anyhow::{Context, Result, anyhow, bail};
use clap::Subcommand;

use super::Cli;

/// Name of the service and timer units.
pub const UNIT: &str = "projectclone-backup";
/// Tags the crontab line `install` writes (a shell comment at its end).
pub const CRON_MARKER: &str = "# projectclone-backup";
/// First line of each unit file `install` writes.
const UNIT_HEADER: &str = "# Written by `projectclone schedule install`; `projectclone schedule remove` removes it.";

#[derive(Subcommand, Debug)]
pub enum ScheduleCmd {
    /// Back up DIR (default: the current directory) on a schedule: a systemd user timer, or
    /// a crontab line where systemd is absent
    Install(InstallArgs),
    /// Remove what `schedule install` wrote (timer and service, or the crontab line)
    Remove {
        /// Only this kind (default: whatever is installed)
        #[arg(long, value_enum)]
        via: Option<Via>,
        /// Print what would be removed; change nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// What is installed, the command it runs, the next run and the last result
    Status,
    /// Propose when to back up DIR, from when it changed (git commits, else file times) and
    /// when it was backed up, explaining the numbers
    Suggest {
        /// The project folder (default: the current directory)
        dir: Option<PathBuf>,
        /// How far back to look, in days
        #[arg(long, value_name = "DAYS", default_value_t = 90, value_parser = clap::value_parser!(u32).range(1..=3650))]
        days: u32,
    },
}

#[derive(clap::Args, Debug)]
pub struct InstallArgs {
    /// The directory to back up (default: the current directory)
    pub dir: Option<PathBuf>,
    /// How often (default: daily)
    #[arg(long, value_enum, conflicts_with = "on_calendar")]
    pub every: Option<Every>,
    /// A systemd calendar expression instead of --every (systemd.time(7)), e.g.
    /// "Mon..Fri 18:30"
    #[arg(long, value_name = "SPEC")]
    pub on_calendar: Option<String>,
    /// Run `prune` after each backup (it applies [retention] of the config files; without
    /// it, prune only collects garbage)
    #[arg(long)]
    pub prune: bool,
    /// systemd or cron (default: systemd when a user instance answers, else cron)
    #[arg(long, value_enum)]
    pub via: Option<Via>,
    /// Print the unit files (or the crontab line); write nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    Systemd,
    Cron,
}

impl Via {
    pub fn name(self) -> &'static str {
        match self {
            Via::Systemd => "systemd",
            Via::Cron => "cron",
        }
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Every {
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

impl Every {
    fn name(self) -> &'static str {
        match self {
            Every::Hourly => "hourly",
            Every::Daily => "daily",
            Every::Weekly => "weekly",
            Every::Monthly => "monthly",
            Every::Yearly => "yearly",
        }
    }
}

/// A file written (or to be written) by `install`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UnitFile {
    pub path: String,
    pub content: String,
}

/// What a `schedule` command did or found, for `output::schedule`.
#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    /// `install`, `remove` or `status`.
    pub action: &'static str,
    pub dry_run: bool,
    /// systemd or cron; `None` when nothing is installed (status, remove).
    pub via: Option<&'static str>,
    /// Something is installed (after the command).
    pub installed: bool,
    /// The command changed something (false: already as asked).
    pub changed: bool,
    /// The unit files (install: written; status: found; remove: removed).
    pub files: Vec<UnitFile>,
    /// The crontab line (install: written; status: found; remove: removed).
    pub crontab_line: Option<String>,
    /// OnCalendar, or the cron schedule.
    pub schedule: Option<String>,
    /// The commands a run executes, in order.
    pub commands: Vec<String>,
    /// `systemctl --user enable --now` ran (systemd only).
    pub enabled: Option<bool>,
    pub next_run: Option<String>,
    pub last_run: Option<String>,
    pub last_result: Option<String>,
    /// Where a run's output goes.
    pub log: Option<String>,
}

/// The folder of user units: `$XDG_CONFIG_HOME/systemd/user` (as systemd reads it).
fn unit_dir() -> Result<PathBuf> {
    directories::BaseDirs::new()
        .map(|d| d.config_dir().join("systemd").join("user"))
        .ok_or_else(|| anyhow!("cannot find the home directory (HOME is unset): no place for the unit files"))
}

fn unit_paths() -> Result<(PathBuf, PathBuf, PathBuf)> {
    let dir = unit_dir()?;
    Ok((
        dir.join(format!("{UNIT}.service")),
        dir.join(format!("{UNIT}.timer")),
        dir.join("timers.target.wants").join(format!("{UNIT}.timer")),
    ))
}

/// Where the output of a cron run goes: `$XDG_STATE_HOME/projectclone/schedule.log`.
fn cron_log() -> Result<PathBuf> {
    directories::BaseDirs::new()
        .and_then(|b| b.state_dir().map(|d| d.join("projectclone").join("schedule.log")))
        .ok_or_else(|| anyhow!("cannot find the home directory (HOME is unset): no place for the log"))
}

/// Whether a systemd user instance answers (`systemctl --user` works): false without
/// `systemctl`, and without a user bus (no login session, as under cron or in a container).
fn systemd_reachable() -> bool {
    Process::new("systemctl")
        .args(["--user", "show-environment"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Run `systemctl --user ARGS`: its standard output, or an error with its message.
fn systemctl(args: &[&str]) -> Result<String> {
    let out = Process::new("systemctl")
        .arg("--user")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("systemctl could not be started")?;
    if !out.status.success() {
        bail!(
            "`systemctl --user {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

const NO_CRONTAB: &str = "no `crontab` program on PATH, and no systemd user instance answers: install cron \
                          (Debian/Ubuntu: apt-get install cron; Fedora: dnf install cronie; Alpine: apk add \
                          cronie), or run this from a systemd login session (or give --via systemd to write the \
                          unit files anyway)";

/// The current crontab: `None` when there is none (`crontab -l` says so and exits 1).
fn crontab_read() -> Result<Option<String>> {
    let out = match Process::new("crontab").arg("-l").stdin(Stdio::null()).output() {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!("{NO_CRONTAB}"),
        Err(e) => return Err(anyhow!("crontab -l could not be started: {e}")),
    };
    if out.status.success() {
        return Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()));
    }
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("no crontab") {
        return Ok(None);
    }
    bail!("`crontab -l` failed ({}): {}", out.status, err.trim())
}

fn crontab_write(text: &str) -> Result<()> {
    let mut child = match Process::new("crontab").arg("-").stdin(Stdio::piped()).spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!("{NO_CRONTAB}"),
        Err(e) => return Err(anyhow!("crontab - could not be started: {e}")),
    };
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(text.as_bytes())
        .context("writing to `crontab -`")?;
    let status = child.wait()?;
    if !status.success() {
        bail!("`crontab -` refused the new crontab ({status}); the old one is unchanged");
    }
    Ok(())
}

/// What a scheduled run executes: the environment, the working folder and the commands.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub dir: String,
    pub env: Vec<(String, String)>,
    /// Each command as its arguments (the program first).
    pub commands: Vec<Vec<String>>,
}

fn utf8(p: &Path, what: &str) -> Result<String> {
    p.to_str().map(str::to_string).ok_or_else(|| {
        anyhow!(
            "{what} {} is not valid UTF-8: unit files and crontabs are text; use a path with a UTF-8 name",
            p.display()
        )
    })
}

/// The job for `install`: this binary (absolute), the global flags given, the directory.
fn job(cli: &Cli, dir: &Path, prune: bool) -> Result<Job> {
    let exe = std::env::current_exe().context("cannot tell where this program is")?;
    let exe = utf8(&fs::canonicalize(&exe).unwrap_or(exe), "this program's path")?;
    let abs = |p: &Path| std::path::absolute(p).with_context(|| format!("{}", p.display()));
    let mut global: Vec<String> = Vec::new();
    if let Some(r) = &cli.repo {
        // A local path is made absolute (the run starts in DIR); a URL is kept.
        let local = !r.contains("://") && !r.starts_with("s3:") && !r.starts_with("rclone:");
        let r = match r.strip_prefix("file:") {
            Some(p) => format!("file:{}", utf8(&abs(Path::new(p))?, "--repo")?),
            None if local => utf8(&abs(Path::new(r))?, "--repo")?,
            None => r.clone(),
        };
        global.extend(["--repo".into(), r]);
    }
    if let Some(f) = &cli.password_file {
        global.extend(["--password-file".into(), utf8(&abs(f)?, "--password-file")?]);
    }
    if let Some(d) = &cli.cache_dir {
        global.extend(["--cache-dir".into(), utf8(&abs(d)?, "--cache-dir")?]);
    }
    if cli.insecure_no_password {
        global.push("--insecure-no-password".into());
    }
    if cli.no_hooks {
        global.push("--no-hooks".into());
    }
    if let Some(k) = cli.limit_upload {
        global.extend(["--limit-upload".into(), k.to_string()]);
    }
    if let Some(k) = cli.limit_download {
        global.extend(["--limit-download".into(), k.to_string()]);
    }
    if let Some(c) = &cli.storage_class {
        global.extend(["--storage-class".into(), c.clone()]);
    }
    for u in &cli.notify {
        global.extend(["--notify".into(), u.clone()]);
    }
    let dir = utf8(dir, "the directory")?;
    let mut env = Vec::new();
    if let Some(p) = &cli.profile {
        env.push(("PROJECTCLONE_PROFILE".to_string(), p.clone()));
    }
    for v in ["XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"] {
        if let Some(val) = std::env::var_os(v) {
            env.push((v.to_string(), utf8(&abs(Path::new(&val))?, v)?));
        }
    }
    let command = |sub: &[&str]| {
        let mut c = vec![exe.clone()];
        c.extend(global.iter().cloned());
        c.extend(sub.iter().map(|s| s.to_string()));
        c
    };
    let mut commands = vec![command(&["backup", &dir])];
    if prune {
        commands.push(command(&["prune"]));
    }
    for (k, v) in &env {
        check_text(k, v)?;
    }
    for a in commands.iter().flatten() {
        check_text("an argument", a)?;
    }
    Ok(Job { dir, env, commands })
}

/// Unit files and crontab lines are line-based: a newline or control character in a value
/// would start another directive.
fn check_text(what: &str, v: &str) -> Result<()> {
    if v.chars().any(char::is_control) {
        bail!("{what} {v:?} holds a control character (a newline?): it cannot go into a unit file or crontab");
    }
    Ok(())
}

/// One word of a systemd command line or assignment: quoted when it has to be; `%`
/// (specifiers) and `$` (variables) are escaped everywhere.
fn systemd_word(w: &str) -> String {
    let escaped = w.replace('%', "%%").replace('$', "$$");
    let plain = !escaped.is_empty()
        && escaped
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@%$".contains(c));
    if plain {
        escaped
    } else {
        format!("\"{}\"", escaped.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// A word for `sh`: single-quoted unless plainly safe.
fn sh_word(w: &str) -> String {
    let plain = !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@".contains(c));
    if plain {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}

/// The service and timer files.
pub fn unit_files(job: &Job, on_calendar: &str, description: &str) -> (String, String) {
    let mut service = format!(
        "{UNIT_HEADER}\n[Unit]\nDescription=projectclone backup of {}\n\n[Service]\nType=oneshot\nWorkingDirectory={}\n",
        description,
        systemd_word(&job.dir)
    );
    for (k, v) in &job.env {
        let _ = writeln!(service, "Environment={}", systemd_word(&format!("{k}={v}")));
    }
    for c in &job.commands {
        let words: Vec<String> = c.iter().map(|w| systemd_word(w)).collect();
        let _ = writeln!(service, "ExecStart={}", words.join(" "));
    }
    // A backup should not slow the machine down for its user.
    service.push_str("Nice=10\nIOSchedulingClass=idle\n");
    let timer = format!(
        "{UNIT_HEADER}\n[Unit]\nDescription=Run {UNIT}.service ({on_calendar})\n\n[Timer]\nOnCalendar={on_calendar}\n\
         Persistent=true\nUnit={UNIT}.service\n\n[Install]\nWantedBy=timers.target\n"
    );
    (service, timer)
}

/// The crontab line: the commands in DIR, output appended to LOG with the exit status.
pub fn cron_line(job: &Job, spec: &str, log: &str) -> String {
    let env: String = job.env.iter().map(|(k, v)| format!("{k}={} ", sh_word(v))).collect();
    let cmds: Vec<String> = job
        .commands
        .iter()
        .map(|c| format!("{env}{}", c.iter().map(|w| sh_word(w)).collect::<Vec<_>>().join(" ")))
        .collect();
    let log = sh_word(log);
    let line = format!(
        "{spec} cd {} && {{ {}; }} >>{log} 2>&1; echo \"projectclone-backup: exit $?\" >>{log} {CRON_MARKER}",
        sh_word(&job.dir),
        cmds.join(" && ")
    );
    // cron turns an unescaped % into a newline.
    line.replace('%', "\\%")
}

/// The crontab with every line tagged by [`CRON_MARKER`] removed (and `add` appended).
fn crontab_with(current: &str, add: Option<&str>) -> String {
    let mut out: String = current
        .lines()
        .filter(|l| !l.trim_end().ends_with(CRON_MARKER))
        .map(|l| format!("{l}\n"))
        .collect();
    if let Some(a) = add {
        out.push_str(a);
        out.push('\n');
    }
    out
}

fn cron_lines(crontab: &str) -> Vec<String> {
    crontab
        .lines()
        .filter(|l| l.trim_end().ends_with(CRON_MARKER))
        .map(str::to_string)
        .collect()
}

/// `--on-calendar`: checked by `systemd-analyze calendar` where it exists.
fn check_calendar(spec: &str) -> Result<()> {
    check_text("--on-calendar", spec)?;
    if spec.trim().is_empty() {
        bail!("--on-calendar is empty: give a calendar expression such as \"daily\" or \"Mon..Fri 18:30\"");
    }
    match Process::new("systemd-analyze")
        .args(["calendar", spec])
        .stdin(Stdio::null())
        .output()
    {
        Ok(o) if !o.status.success() => bail!(
            "--on-calendar {spec:?} is not a calendar expression systemd accepts: {} (see systemd.time(7))",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        _ => Ok(()),
    }
}

fn write_file(path: &Path, content: &str) -> Result<bool> {
    if fs::read(path).ok().as_deref() == Some(content.as_bytes()) {
        return Ok(false);
    }
    let dir = path.parent().expect("a unit path has a folder");
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().expect("a file name").to_string_lossy()
    ));
    fs::write(&tmp, content).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(true)
}

/// Whether `link` is the enable symlink to our timer (what `systemctl enable`, or
/// `install` without a reachable systemd, makes).
fn is_our_link(link: &Path, timer: &Path) -> bool {
    match fs::read_link(link) {
        Ok(t) => {
            let t = if t.is_absolute() {
                t
            } else {
                link.parent().unwrap_or(Path::new("/")).join(t)
            };
            t.file_name() == timer.file_name()
        }
        Err(_) => false,
    }
}

pub fn install(cli: &Cli, a: &InstallArgs, has_password_source: bool, warn: &dyn Fn(&str)) -> Result<Report> {
    let dir = match &a.dir {
        Some(d) => d.clone(),
        None => std::env::current_dir().context("the current directory")?,
    };
    let dir = fs::canonicalize(&dir).with_context(|| {
        format!(
            "the directory to back up, {}: give an existing directory",
            dir.display()
        )
    })?;
    if !dir.is_dir() {
        bail!("{} is not a directory: give the directory to back up", dir.display());
    }
    let via = match a.via {
        Some(v) => v,
        None if systemd_reachable() => Via::Systemd,
        None => Via::Cron,
    };
    let job = job(cli, &dir, a.prune)?;
    if !has_password_source {
        warn(
            "no password file or password command is configured (flags or config files): the scheduled run has \
             no terminal to ask on and cannot see PROJECTCLONE_PASSWORD of this shell; set password-file or \
             password-command in the config file (or give --password-file here)",
        );
    }
    let commands: Vec<String> = job.commands.iter().map(|c| c.join(" ")).collect();
    let mut report = Report {
        action: "install",
        dry_run: a.dry_run,
        via: Some(via.name()),
        commands,
        ..Default::default()
    };
    match via {
        Via::Systemd => {
            let on_calendar = match (&a.on_calendar, a.every) {
                (Some(s), _) => {
                    check_calendar(s)?;
                    s.clone()
                }
                (None, e) => e.unwrap_or(Every::Daily).name().to_string(),
            };
            let (service_path, timer_path, link) = unit_paths()?;
            let (service, timer) = unit_files(&job, &on_calendar, &job.dir);
            report.schedule = Some(on_calendar);
            report.files = vec![
                UnitFile {
                    path: service_path.display().to_string(),
                    content: service.clone(),
                },
                UnitFile {
                    path: timer_path.display().to_string(),
                    content: timer.clone(),
                },
            ];
            report.log = Some(format!("journalctl --user -u {UNIT}"));
            if a.dry_run {
                return Ok(report);
            }
            let changed = write_file(&service_path, &service)? | write_file(&timer_path, &timer)?;
            report.changed = changed;
            report.installed = true;
            if systemd_reachable() {
                systemctl(&["daemon-reload"]).context("the unit files are written")?;
                systemctl(&["enable", "--now", &format!("{UNIT}.timer")]).context("the unit files are written")?;
                report.enabled = Some(true);
            } else {
                // What `systemctl enable` would do, so the timer starts with the user's next
                // systemd session.
                if !is_our_link(&link, &timer_path) {
                    let wants = link.parent().expect("a folder");
                    fs::create_dir_all(wants).with_context(|| format!("creating {}", wants.display()))?;
                    let _ = fs::remove_file(&link);
                    std::os::unix::fs::symlink(Path::new("..").join(timer_path.file_name().expect("name")), &link)
                        .with_context(|| format!("creating {}", link.display()))?;
                    report.changed = true;
                }
                report.enabled = Some(false);
                warn(&format!(
                    "no systemd user instance answers (no systemctl, or no user bus: not in a login session?): \
                     the timer is enabled on disk and starts with your next systemd user session; then \
                     `systemctl --user daemon-reload && systemctl --user start {UNIT}.timer` starts it at once"
                ));
            }
        }
        Via::Cron => {
            if a.on_calendar.is_some() {
                bail!(
                    "--on-calendar is a systemd calendar expression and this schedule is a crontab line: give \
                     --every hourly|daily|weekly|monthly|yearly (or --via systemd)"
                );
            }
            let spec = format!("@{}", a.every.unwrap_or(Every::Daily).name());
            let log = cron_log()?;
            let line = cron_line(&job, &spec, &utf8(&log, "the log file")?);
            report.schedule = Some(spec);
            report.crontab_line = Some(line.clone());
            report.log = Some(log.display().to_string());
            if a.dry_run {
                return Ok(report);
            }
            let current = crontab_read()?.unwrap_or_default();
            let new = crontab_with(&current, Some(&line));
            if new != current {
                if let Some(d) = log.parent() {
                    fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
                }
                crontab_write(&new)?;
                report.changed = true;
            }
            report.installed = true;
        }
    }
    Ok(report)
}

pub fn remove(via: Option<Via>, dry_run: bool) -> Result<Report> {
    let mut report = Report {
        action: "remove",
        dry_run,
        ..Default::default()
    };
    if via != Some(Via::Cron) {
        let (service_path, timer_path, link) = unit_paths()?;
        let present: Vec<&PathBuf> = [&service_path, &timer_path]
            .into_iter()
            .filter(|p| p.symlink_metadata().is_ok())
            .collect();
        if !present.is_empty() || is_our_link(&link, &timer_path) {
            report.via = Some("systemd");
            for p in &present {
                report.files.push(UnitFile {
                    path: p.display().to_string(),
                    content: fs::read_to_string(p).unwrap_or_default(),
                });
            }
            if !dry_run {
                let reachable = systemd_reachable();
                if reachable {
                    systemctl(&["disable", "--now", &format!("{UNIT}.timer")])?;
                }
                if is_our_link(&link, &timer_path) {
                    fs::remove_file(&link).with_context(|| format!("removing {}", link.display()))?;
                    if let Some(wants) = link.parent() {
                        let _ = fs::remove_dir(wants); // only when empty
                    }
                }
                for p in &present {
                    fs::remove_file(p).with_context(|| format!("removing {}", p.display()))?;
                }
                if reachable {
                    systemctl(&["daemon-reload"])?;
                }
                report.changed = true;
            }
        }
    }
    if via != Some(Via::Systemd) {
        let current = match crontab_read() {
            Ok(c) => c,
            // Without crontab there is no crontab line to remove, unless asked for one.
            Err(_) if via.is_none() => None,
            Err(e) => return Err(e),
        };
        if let Some(current) = current {
            let lines = cron_lines(&current);
            if !lines.is_empty() {
                report.via = Some(if report.via.is_some() { "systemd+cron" } else { "cron" });
                report.crontab_line = Some(lines.join("\n"));
                if !dry_run {
                    crontab_write(&crontab_with(&current, None))?;
                    report.changed = true;
                }
            }
        }
    }
    Ok(report)
}

/// `systemctl show` values, `KEY=VALUE` lines; empty and `n/a` values are left out.
fn show(unit: &str, props: &[&str]) -> Vec<(String, String)> {
    let mut args = vec!["show", unit];
    for p in props {
        args.extend(["-p", p]);
    }
    systemctl(&args)
        .map(|out| {
            out.lines()
                .filter_map(|l| l.split_once('='))
                .filter(|(_, v)| !v.is_empty() && *v != "n/a")
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .unwrap_or_default()
}

pub fn status() -> Result<Report> {
    let mut report = Report {
        action: "status",
        ..Default::default()
    };
    let (service_path, timer_path, _) = unit_paths()?;
    if service_path.exists() || timer_path.exists() {
        report.via = Some("systemd");
        report.installed = true;
        report.log = Some(format!("journalctl --user -u {UNIT}"));
        for p in [&service_path, &timer_path] {
            if let Ok(content) = fs::read_to_string(p) {
                for l in content.lines() {
                    if let Some(c) = l.strip_prefix("ExecStart=") {
                        report.commands.push(c.to_string());
                    } else if let Some(s) = l.strip_prefix("OnCalendar=") {
                        report.schedule = Some(s.to_string());
                    }
                }
                report.files.push(UnitFile {
                    path: p.display().to_string(),
                    content,
                });
            }
        }
        if systemd_reachable() {
            let timer = show(&format!("{UNIT}.timer"), &["NextElapseUSecRealtime", "LastTriggerUSec"]);
            let service = show(&format!("{UNIT}.service"), &["Result", "ExecMainStatus"]);
            let get = |v: &[(String, String)], k: &str| v.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
            report.next_run = get(&timer, "NextElapseUSecRealtime");
            report.last_run = get(&timer, "LastTriggerUSec");
            if report.last_run.is_some() {
                report.last_result = match (get(&service, "Result"), get(&service, "ExecMainStatus")) {
                    (Some(r), Some(s)) => Some(format!("{r} (exit {s})")),
                    (r, _) => r,
                };
            }
            report.enabled =
                Some(systemctl(&["is-enabled", &format!("{UNIT}.timer")]).is_ok_and(|o| o.trim() == "enabled"));
        }
    }
    if let Ok(Some(crontab)) = crontab_read() {
        let lines = cron_lines(&crontab);
        if !lines.is_empty() {
            report.via = Some(if report.via.is_some() { "systemd+cron" } else { "cron" });
            report.installed = true;
            let line = lines.join("\n");
            report
                .schedule
                .get_or_insert_with(|| line.split(' ').next().unwrap_or("").to_string());
            report.crontab_line = Some(line);
            if let Ok(log) = cron_log() {
                report.log.get_or_insert_with(|| log.display().to_string());
                if let Ok(text) = fs::read_to_string(&log) {
                    report.last_result = text
                        .lines()
                        .rev()
                        .find_map(|l| l.strip_prefix("projectclone-backup: exit "))
                        .map(|code| format!("exit {code}"));
                    report.last_run = fs::metadata(&log)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| jiff::Timestamp::try_from(t).ok())
                        .map(|t| t.to_string());
                }
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Job {
        Job {
            dir: "/home/u/my app".into(),
            env: vec![("PROJECTCLONE_PROFILE".into(), "work".into())],
            commands: vec![
                vec!["/usr/bin/projectclone".into(), "backup".into(), "/home/u/my app".into()],
                vec!["/usr/bin/projectclone".into(), "prune".into()],
            ],
        }
    }

    #[test]
    fn systemd_words_are_quoted_and_escaped() {
        assert_eq!(systemd_word("/a/b-c.d"), "/a/b-c.d");
        assert_eq!(systemd_word("a b"), "\"a b\"");
        assert_eq!(systemd_word("100%"), "100%%");
        assert_eq!(systemd_word("$HOME"), "$$HOME");
        assert_eq!(systemd_word("say \"hi\"\\"), "\"say \\\"hi\\\"\\\\\"");
        assert_eq!(systemd_word(""), "\"\"");
    }

    #[test]
    fn units_and_cron_line() {
        let (service, timer) = unit_files(&job(), "daily", "/home/u/my app");
        assert!(service.contains("WorkingDirectory=\"/home/u/my app\"\n"), "{service}");
        assert!(service.contains("Environment=PROJECTCLONE_PROFILE=work\n"), "{service}");
        assert!(
            service.contains(
                "ExecStart=/usr/bin/projectclone backup \"/home/u/my app\"\nExecStart=/usr/bin/projectclone prune\n"
            ),
            "{service}"
        );
        assert!(timer.contains("OnCalendar=daily\nPersistent=true\n"), "{timer}");
        assert!(timer.contains("[Install]\nWantedBy=timers.target\n"), "{timer}");
        let line = cron_line(&job(), "@daily", "/l/schedule.log");
        assert_eq!(
            line,
            "@daily cd '/home/u/my app' && { PROJECTCLONE_PROFILE=work /usr/bin/projectclone backup '/home/u/my app' \
             && PROJECTCLONE_PROFILE=work /usr/bin/projectclone prune; } >>/l/schedule.log 2>&1; \
             echo \"projectclone-backup: exit $?\" >>/l/schedule.log # projectclone-backup"
        );
        let mut j = job();
        j.dir = "/it's 100%".into();
        let line = cron_line(&j, "@daily", "/l");
        assert!(line.starts_with("@daily cd '/it'\\''s 100\\%' && "), "{line}");
    }

    #[test]
    fn crontab_keeps_other_lines_and_one_of_ours() {
        let ours = "@daily cd /a && { x; } >>l 2>&1; echo \"projectclone-backup: exit $?\" >>l # projectclone-backup";
        let before = "MAILTO=me\n0 1 * * * other job\n";
        let once = crontab_with(before, Some(ours));
        assert_eq!(once, format!("{before}{ours}\n"));
        assert_eq!(crontab_with(&once, Some(ours)), once);
        assert_eq!(cron_lines(&once), vec![ours.to_string()]);
        assert_eq!(crontab_with(&once, None), before);
    }
}
