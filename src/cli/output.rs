//! Everything the binary prints. Results go to stdout (one JSON document with --json);
//! human messages, warnings and progress go to stderr, progress only on a terminal.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::json;

use projectclone::backend::retry::Stats;
use projectclone::backup::BackupResult;
use projectclone::check::CheckReport;
use projectclone::export::ExportResult;
use projectclone::format::Snapshot;
use projectclone::id::SnapshotId;
use projectclone::inspect::{Change, LsEntry, RepoStats, SnapshotStats};
use projectclone::progress::Progress;
use projectclone::restore::{Item, RestoreOptions, RestoreResult};
use projectclone::{format_name, format_time};

use super::Cli;
use super::report;

/// `println!` that ignores a closed stdout (`… | head`) instead of panicking.
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stdout().lock(), $($t)*);
    }};
}

/// A string the repository (or a scanned file system) provides — a host, user, tag or
/// note, a path, a key file's name — for human output: escaped as names are
/// ([`format_name`]: a backslash is `\\`, a control byte `\xHH`), so it cannot move the
/// cursor, clear the screen or start a line of its own. JSON output keeps it exact.
fn field(s: &str) -> String {
    format_name(s.as_bytes())
}

/// A local path for human output, escaped as names are.
fn local_path(p: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    format_name(p.as_os_str().as_bytes())
}

/// A message for human output that may quote such strings: each control character
/// becomes `\xHH` (a newline too, unless `keep_newlines`). Backslashes are left alone, so
/// names already escaped in it read the same.
pub fn text(s: &str, keep_newlines: bool) -> std::borrow::Cow<'_, str> {
    let escape = |c: char| (c < ' ' && !(keep_newlines && c == '\n')) || c == '\x7f';
    if !s.chars().any(escape) {
        return s.into();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if escape(c) {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out.into()
}

/// The first `n` characters of a name that should be a hex id, escaped.
fn short(name: &str, n: usize) -> String {
    let prefix: String = name.chars().take(n).collect();
    field(&prefix)
}

/// The stores this command talks to, named by the key their counters take in the JSON
/// report: `storage` for the repository, `destination_storage` for `copy --to`.
static STORAGE: Mutex<Vec<(&'static str, Arc<Stats>)>> = Mutex::new(Vec::new());

/// Counts of `stats` go into every JSON document this command prints, under `key`.
pub fn report_storage(key: &'static str, stats: Arc<Stats>) {
    let mut v = STORAGE.lock().unwrap_or_else(|e| e.into_inner());
    v.retain(|(k, _)| *k != key);
    v.push((key, stats));
}

/// With `-v`, what each store of this command moved, one line each (`--json` documents
/// carry the same counts under `storage` and `destination_storage`).
pub fn storage_summary() {
    if report::verbose() == 0 {
        return;
    }
    for (key, stats) in STORAGE.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        let s = stats.snapshot();
        if s.requests == 0 {
            continue;
        }
        let which = if *key == "storage" { "repository" } else { "destination" };
        report::info(
            "storage.summary",
            &format!(
                "{which} storage: {} requests ({} tried again), {} received, {} sent",
                s.requests,
                s.retries,
                bytesize::ByteSize(s.bytes_received),
                bytesize::ByteSize(s.bytes_sent)
            ),
            &[
                ("store", json!(key)),
                ("requests", json!(s.requests)),
                ("retries", json!(s.retries)),
                ("bytes_received", json!(s.bytes_received)),
                ("bytes_sent", json!(s.bytes_sent)),
            ],
        );
    }
}

fn print_json(v: &serde_json::Value) {
    let status = super::progress::json_status();
    let mut v = match v {
        // With --json-status every line is an object with a `message_type`: a list
        // (import's) comes as `results` of the summary.
        serde_json::Value::Array(_) if status => json!({"results": v}),
        _ => v.clone(),
    };
    if let serde_json::Value::Object(m) = &mut v {
        for (key, stats) in STORAGE.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            m.insert((*key).into(), json!(stats.snapshot()));
        }
    }
    if status {
        // After the status lines, the result as one line of its own kind (restic's shape).
        if let serde_json::Value::Object(m) = &mut v {
            m.insert("message_type".into(), "summary".into());
        }
        outln!("{v}");
        return;
    }
    outln!("{}", serde_json::to_string_pretty(&v).expect("JSON values serialise"));
}

/// This command's progress reporter (see `progress.rs`).
pub fn progress(cli: &Cli) -> Box<dyn Progress> {
    super::progress::reporter(cli, cli.command_name())
}

/// A warning on stderr (not with `-q`).
pub fn warn(_cli: &Cli, msg: &str) {
    report::warning("cli.warning", msg, &[]);
}

/// Something the user should know once (not a problem; not with `-q`).
pub fn note(_cli: &Cli, msg: &str) {
    report::note("cli.note", msg, &[]);
}

/// A snapshot deleted or put back behind this client's back: printed even with `-q`.
pub fn alert(a: &projectclone::trust::Alert) {
    report::error("trust.alert", &format!("SECURITY WARNING: {a}"), &[]);
}

/// The command failed: its error, with the causes, on stderr.
pub fn command_failed(e: &anyhow::Error) {
    let mut msg = format!("{e:#}");
    msg.push_str(password_hint(e));
    report::error("command.failed", &msg, &[]);
}

/// The program's own way out after the library's errors, which name no flags and no
/// commands (a library caller gives `Credentials`, and unlocks with the program): where it
/// takes a password from, how it removes a lock.
fn password_hint(e: &anyhow::Error) -> &'static str {
    match e.chain().find_map(|c| c.downcast_ref::<projectclone::Error>()) {
        Some(projectclone::Error::WrongPassword(_)) => " (check --password-file / PROJECTCLONE_PASSWORD)",
        Some(projectclone::Error::PasswordRequired(_)) => {
            ": give --password-file F, PROJECTCLONE_PASSWORD_FILE or PROJECTCLONE_PASSWORD (or \
             --insecure-no-password for a repository made without one)"
        }
        Some(projectclone::Error::NoPasswordlessKey(_)) => {
            "; leave the flag out (--insecure-no-password) and give --password-file F, \
             PROJECTCLONE_PASSWORD_FILE or PROJECTCLONE_PASSWORD"
        }
        Some(projectclone::Error::NotARepository(_)) => " (`projectclone init` creates one)",
        Some(projectclone::Error::PasswordlessOnly(_)) => ": give --insecure-no-password (and no password)",
        Some(projectclone::Error::Locked(_)) => {
            ": `projectclone unlock` removes it once it is stale (at once on its own host when the process has \
             exited); `projectclone unlock --remove-all` removes it now"
        }
        _ => "",
    }
}

/// `, N other` (symlinks and special files) for a summary line, nothing when there are none.
fn others(n: u64) -> String {
    if n == 0 { String::new() } else { format!(", {n} other") }
}

/// A per-entry error of a command that goes on (`PATH: why`).
fn entry_error(id: &str, path: &str, why: &str) {
    report::error(
        id,
        &format!("{path}: {why}"),
        &[("path", json!(path)), ("error", json!(why))],
    );
}

pub fn init(json: bool, location: &str, repo_id: &[u8; 32]) {
    if json {
        print_json(&json!({"repository": location, "id": hex::encode(repo_id)}));
    } else {
        report::info(
            "init.created",
            &format!(
                "created repository {} at {}",
                &hex::encode(repo_id)[..8],
                format_name(location.as_bytes())
            ),
            &[
                ("repository", json!(location)),
                ("repository_id", json!(hex::encode(repo_id))),
            ],
        );
    }
}

pub fn backup(cli: &Cli, res: &BackupResult) {
    let s = &res.summary;
    for (p, e) in &res.errors {
        entry_error("backup.unreadable", &local_path(p), e);
    }
    let id = res.snapshot_id.map(|i| i.to_hex());
    if cli.json {
        print_json(&json!({
            "snapshot_id": id,
            "dry_run": res.snapshot_id.is_none(),
            "files_new": s.files_new,
            "files_changed": s.files_changed,
            "files_unmodified": s.files_unmodified,
            "dirs": s.dirs,
            "other": res.other,
            "data_added": s.data_added,
            "data_read": s.data_read,
            "total_duration": s.duration_ns as f64 / 1e9,
            "errors": res.errors.len(),
            "error_paths": res.errors.iter().map(|(p, e)| json!({"path": p.display().to_string(), "error": e})).collect::<Vec<_>>(),
            "skipped": res.skipped.iter().map(|(p, w)| json!({"path": p.display().to_string(), "reason": w})).collect::<Vec<_>>(),
        }));
    } else if let Some(id) = &id {
        outln!("{id}");
    }
    if !cli.json {
        report::info(
            "backup.summary",
            &format!(
                "{}files: {} new, {} changed, {} unmodified; {} dirs{}; {} read, {} added; {:.2}s",
                if id.is_none() { "dry run, nothing written. " } else { "" },
                s.files_new,
                s.files_changed,
                s.files_unmodified,
                s.dirs,
                others(res.other),
                bytesize::ByteSize(s.data_read),
                bytesize::ByteSize(s.data_added),
                s.duration_ns as f64 / 1e9
            ),
            &[
                ("snapshot", json!(id)),
                ("files_new", json!(s.files_new)),
                ("files_changed", json!(s.files_changed)),
                ("files_unmodified", json!(s.files_unmodified)),
                ("dirs", json!(s.dirs)),
                ("other", json!(res.other)),
                ("bytes_read", json!(s.data_read)),
                ("bytes_added", json!(s.data_added)),
            ],
        );
        // With -v the walk logged each one as it left it out (`backup.excluded`).
        if report::verbose() == 0 && !res.skipped.is_empty() {
            report::note(
                "backup.skipped_count",
                &format!(
                    "{} entr{} left out by --exclude-caches, --one-file-system or --exclude-larger-than (-v lists them)",
                    res.skipped.len(),
                    if res.skipped.len() == 1 { "y" } else { "ies" }
                ),
                &[("count", json!(res.skipped.len()))],
            );
        }
        if !res.errors.is_empty() {
            // An entry whose extended attributes could not be read, or a directory that
            // could not be listed completely, is in the snapshot: say what is missing
            // without claiming the path is.
            report::warning(
                "backup.incomplete",
                &format!(
                    "{} path(s) could not be read completely (listed above); the snapshot lacks what could not be read",
                    res.errors.len()
                ),
                &[("count", json!(res.errors.len()))],
            );
        }
    }
}

pub fn snapshot_json(id: &SnapshotId, s: &Snapshot) -> serde_json::Value {
    json!({
        "id": id.to_hex(),
        "short_id": id.short(),
        "time": format_time(&s.time, s.utc_offset),
        "hostname": s.hostname,
        "username": s.username,
        "paths": s.paths.iter().map(|p| format_name(p)).collect::<Vec<_>>(),
        "tags": s.tags,
        "note": s.note,
        "tree": s.tree.to_hex(),
        "parent": s.parent.map(|p| p.to_hex()),
        "seen": s.seen.iter().map(|p| p.to_hex()).collect::<Vec<_>>(),
        "git": s.git.as_ref().map(|g| json!({
            "commit": g.commit,
            "branch": g.branch,
            "dirty": g.dirty,
        })),
    })
}

/// A snapshot's git state for people: `  [git 1a2b3c4d on main, dirty]`, or nothing.
pub fn git_label(s: &Snapshot) -> String {
    let Some(g) = &s.git else { return String::new() };
    let short: String = g.commit.chars().take(8).collect();
    let branch = g
        .branch
        .as_ref()
        .map(|b| format!(" on {}", field(b)))
        .unwrap_or_default();
    let dirty = match g.dirty {
        Some(true) => ", dirty",
        Some(false) => "",
        None => ", dirty?",
    };
    format!("  [git {short}{branch}{dirty}]")
}

pub fn snapshots(json: bool, snaps: &[(SnapshotId, Snapshot)], names: &projectclone::select::ProjectNames) {
    if json {
        print_json(&serde_json::Value::Array(
            snaps
                .iter()
                .map(|(i, s)| {
                    let mut v = snapshot_json(i, s);
                    v["project"] = projectclone::select::project_name(s, names).into();
                    v
                })
                .collect(),
        ));
        return;
    }
    outln!("{:<8}  {:<35}  {:<15}  {:<15}  paths", "id", "time", "host", "tags");
    for (id, s) in snaps {
        let t = format_time(&s.time, s.utc_offset);
        outln!(
            "{:<8}  {:<35}  {:<15}  {:<15}  {}{}{}",
            id.short(),
            t,
            field(&s.hostname),
            s.tags.iter().map(|t| field(t)).collect::<Vec<_>>().join(","),
            s.paths.iter().map(|p| format_name(p)).collect::<Vec<_>>().join(" "),
            s.note.as_ref().map(|n| format!("  ({})", field(n))).unwrap_or_default(),
            git_label(s)
        );
    }
    outln!("{} snapshot(s)", snaps.len());
}

/// `schedule suggest`: the numbers, then the suggested commands.
pub fn suggestion(json: bool, dir: &Path, source: &str, days: u32, offset: i32, s: &projectclone::suggest::Suggestion) {
    let install = match &s.on_calendar {
        Some(c) => format!(
            "projectclone schedule install {} --on-calendar {}",
            projectclone::config::shell_quote(&local_path(dir)),
            projectclone::config::shell_quote(c)
        ),
        None => format!(
            "projectclone schedule install {} --every weekly",
            projectclone::config::shell_quote(&local_path(dir))
        ),
    };
    let watch = s.watch.then(|| {
        format!(
            "projectclone watch {}",
            projectclone::config::shell_quote(&local_path(dir))
        )
    });
    if json {
        let mut v = serde_json::to_value(s).expect("serialisable");
        v["source"] = source.into();
        v["days"] = days.into();
        v["command"] = install.into();
        v["watch_command"] = watch.into();
        print_json(&v);
        return;
    }
    let hm = |m: u32| format!("{:02}:{:02}", m / 60, m % 60);
    let zone = format!(
        "UTC{}{:02}:{:02}",
        if offset < 0 { '-' } else { '+' },
        offset.abs() / 3600,
        offset.abs() % 3600 / 60
    );
    if s.changes == 0 {
        outln!("changes: no {source} in the last {days} day(s)");
    } else {
        let per_day: Vec<String> = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
            .iter()
            .zip(s.per_weekday)
            .map(|(d, n)| format!("{d} {n}"))
            .collect();
        outln!(
            "changes: {} {source} in the last {days} day(s), on {} day(s) ({:.1} per active day): {}",
            s.changes,
            s.active_days,
            s.per_active_day,
            per_day.join(", ")
        );
        if let Some(m) = s.work_ends {
            outln!(
                "the day's work ends by {} ({zone}): 90% of the changes were made before it",
                hm(m)
            );
        }
    }
    match (s.snapshots, s.coverage, s.longest_gap) {
        (0, _, _) => outln!("backups: no snapshot of {} in the last {days} day(s)", local_path(dir)),
        (n, cov, gap) => outln!(
            "backups: {n} snapshot(s) of {} in the last {days} day(s){}{}",
            local_path(dir),
            cov.map(|c| format!("; {:.0}% of the changes were saved within 24 hours", c * 100.0))
                .unwrap_or_default(),
            gap.map(|g| format!(
                "; the longest time without one: {}",
                humantime::format_duration(std::time::Duration::from_secs(g.max(0) as u64))
            ))
            .unwrap_or_default()
        ),
    }
    outln!("suggested: {install}");
    match &s.on_calendar {
        Some(_) if s.weekdays.len() < 7 => outln!(
            "  a backup on {} at {}, after the usual end of the day's work",
            s.weekdays.join(", "),
            hm(s.at)
        ),
        Some(_) => outln!(
            "  a backup every day at {}, after the usual end of the day's work",
            hm(s.at)
        ),
        None => outln!("  nothing changed lately: a weekly backup is plenty"),
    }
    if let Some(w) = watch {
        outln!(
            "also: {w}\n  it changes {:.0} times on an active day: `watch` saves the work as it happens",
            s.per_active_day
        );
    }
    outln!("(a heuristic from the past, not a prediction: README, \"schedule suggest\")");
}

/// `parity status`.
pub fn parity_status(json: bool, s: &projectclone::parity::Status) {
    if json {
        print_json(&serde_json::to_value(s).expect("serialisable"));
        return;
    }
    parity_lines(s);
}

fn parity_lines(s: &projectclone::parity::Status) {
    for u in &s.unreadable {
        outln!("error: unreadable parity object {}", text(u, false));
    }
    let share = if s.pack_bytes > 0 {
        format!(
            " ({:.1}% of the packs' {})",
            s.parity_bytes as f64 * 100.0 / s.pack_bytes as f64,
            bytesize::ByteSize(s.pack_bytes)
        )
    } else {
        String::new()
    };
    outln!(
        "parity: {} of {} pack(s) covered, in {} group(s); {} parity object(s), {}{share}",
        s.covered,
        s.packs,
        s.groups - s.broken_groups,
        s.parity_objects,
        bytesize::ByteSize(s.parity_bytes)
    );
    if s.broken_groups > 0 {
        outln!(
            "{} group(s) lost a pack to prune and protect nothing fully: `projectclone parity create` replaces them",
            s.broken_groups
        );
    }
}

/// `parity create`.
pub fn parity_created(json: bool, r: &projectclone::parity::CreateReport) {
    if json {
        print_json(&serde_json::to_value(r).expect("serialisable"));
        return;
    }
    for p in &r.damaged {
        outln!("error: pack {p} does not hash to its id: left out (`projectclone parity rebuild` or `repair index`)");
    }
    if !report::quiet() {
        outln!(
            "{} group(s) of {} pack(s) written ({}); {} old parity object(s) removed",
            r.groups_written,
            r.packs_grouped,
            bytesize::ByteSize(r.bytes_written),
            r.removed
        );
        parity_lines(&r.status);
    }
}

/// `parity rebuild`.
pub fn parity_rebuilt(json: bool, r: &projectclone::parity::RebuildReport) {
    if json {
        print_json(&serde_json::to_value(r).expect("serialisable"));
        return;
    }
    let done = if r.dry_run {
        "would be rebuilt"
    } else {
        "rebuilt from parity"
    };
    for p in &r.rebuilt {
        outln!("pack {p} {done}");
    }
    for p in &r.unrecoverable {
        outln!("error: pack {p} cannot be rebuilt: its group has fewer intact shards than lost packs");
    }
    if r.rebuilt.is_empty() && r.unrecoverable.is_empty() {
        outln!("no pack needs rebuilding");
    }
}

/// `watch`: what is watched and how it is timed (stderr; then a backup line per backup).
pub fn watching(json: bool, dir: &Path, t: &super::watch::Timing) {
    if json || report::quiet() {
        return;
    }
    eprintln!(
        "watching {}: a backup {} after the last change, at least {} apart, at most {} after a change; Ctrl-C stops",
        local_path(dir),
        humantime::format_duration(t.quiet_for),
        humantime::format_duration(t.min_interval),
        humantime::format_duration(t.max_interval)
    );
}

/// `mount`: where, and how many snapshots (stderr; the command then runs until stopped).
pub fn mounted(json: bool, dir: &Path, count: usize) {
    if json || report::quiet() {
        return;
    }
    eprintln!(
        "{count} snapshot(s) mounted read-only at {}; Ctrl-C or `umount {}` ends it",
        local_path(dir),
        local_path(dir)
    );
}

/// `find`: the matches of each snapshot, oldest snapshot first.
pub fn found(json: bool, found: &[(SnapshotId, Snapshot, Vec<projectclone::find::Found>)]) {
    let kind = |k: &projectclone::format::NodeKind| {
        use projectclone::format::NodeKind::*;
        match k {
            File(_) | HardLink { .. } => "file",
            Dir(_) | InlineDir(_) => "dir",
            Symlink(_) => "symlink",
            Fifo => "fifo",
            Socket => "socket",
            CharDevice(_) | BlockDevice(_) => "device",
        }
    };
    let size = |k: &projectclone::format::NodeKind| match k {
        projectclone::format::NodeKind::File(d) | projectclone::format::NodeKind::HardLink { data: d, .. } => d.size,
        _ => 0,
    };
    if json {
        let mut v = Vec::new();
        for (id, s, hits) in found {
            for f in hits {
                v.push(json!({
                    "snapshot": id.to_hex(),
                    "time": format_time(&s.time, s.utc_offset),
                    "path": format!("/{}", format_name(&f.path)),
                    "type": kind(&f.node.kind),
                    "size": size(&f.node.kind),
                    "mtime": format_time(&f.node.meta.mtime, s.utc_offset),
                }));
            }
        }
        print_json(&serde_json::Value::Array(v));
        return;
    }
    let mut n = 0;
    for (id, _, hits) in found {
        for f in hits {
            let slash = if kind(&f.node.kind) == "dir" { "/" } else { "" };
            outln!("{}  /{}{slash}", id.short(), format_name(&f.path));
            n += 1;
        }
    }
    let with = found.iter().filter(|f| !f.2.is_empty()).count();
    if !report::quiet() {
        eprintln!("{n} match(es) in {with} of {} snapshot(s)", found.len());
    }
}

/// A commit `log` shows, with the snapshots taken at it (oldest first).
pub struct LogCommit {
    pub commit: String,
    /// Committer date, ISO 8601 as git gives it.
    pub date: String,
    pub subject: String,
    pub snapshots: Vec<(SnapshotId, Snapshot)>,
}

/// `log`: commits newest first, each followed by its snapshots.
pub fn git_log(json: bool, commits: &[LogCommit]) {
    if json {
        print_json(&serde_json::Value::Array(
            commits
                .iter()
                .map(|c| {
                    json!({
                        "commit": c.commit,
                        "date": c.date,
                        "subject": c.subject,
                        "snapshots": c.snapshots.iter().map(|(id, s)| json!({
                            "id": id.to_hex(),
                            "time": format_time(&s.time, s.utc_offset),
                            "dirty": s.git.as_ref().and_then(|g| g.dirty),
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect(),
        ));
        return;
    }
    let mut shown = 0;
    for c in commits {
        outln!(
            "{}  {}  {}",
            &c.commit[..c.commit.len().min(8)],
            c.date,
            field(&c.subject)
        );
        for (id, s) in &c.snapshots {
            let dirty = match s.git.as_ref().and_then(|g| g.dirty) {
                Some(true) => "  (with uncommitted changes)",
                Some(false) => "",
                None => "  (changes unknown)",
            };
            outln!(
                "          snapshot {}  {}{dirty}",
                id.short(),
                format_time(&s.time, s.utc_offset)
            );
            shown += 1;
        }
    }
    outln!("{} commit(s), {shown} snapshot(s) taken at them", commits.len());
}

/// `git-hook install|remove`: what was done (`installed`, `removed`, `absent`) to which hook.
pub fn git_hook(json: bool, done: &str, hook: &Path, tree: &Path) {
    if json {
        print_json(&json!({"hook": local_path(hook), "work_tree": local_path(tree), "done": done}));
        return;
    }
    if report::quiet() {
        return;
    }
    let hook = local_path(hook);
    match done {
        "installed" => outln!(
            "installed {hook}: each commit in {} is followed by a backup of it",
            local_path(tree)
        ),
        "removed" => outln!("removed the post-commit hook {hook}"),
        _ => outln!("no post-commit hook at {hook}: nothing to remove"),
    }
}

/// `status`: one row per project (host and paths) with its newest snapshot and age.
pub fn status(json: bool, rows: &[projectclone::status::ProjectStatus]) {
    if json {
        print_json(&serde_json::Value::Array(
            rows.iter()
                .map(|r| {
                    json!({
                        "project": r.project,
                        "paths": r.paths.iter().map(|p| format_name(p)).collect::<Vec<_>>(),
                        "host": r.host,
                        "snapshot": r.snapshot.to_hex(),
                        "time": format_time(&r.time, r.utc_offset),
                        "age_seconds": r.age_seconds,
                    })
                })
                .collect(),
        ));
        return;
    }
    if rows.is_empty() {
        outln!("no snapshots");
        return;
    }
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                field(&r.project),
                field(&r.host),
                r.snapshot.short(),
                projectclone::status::format_age(r.age_seconds),
                format_time(&r.time, r.utc_offset),
                r.paths.iter().map(|p| format_name(p)).collect::<Vec<_>>().join(" "),
            ]
        })
        .collect();
    let head = ["project", "host", "snapshot", "age", "time", "paths"];
    let width = |i: usize| {
        cells
            .iter()
            .map(|c| c[i].chars().count())
            .chain([head[i].len()])
            .max()
            .unwrap_or(0)
    };
    let w: Vec<usize> = (0..5).map(width).collect();
    let line = |c: [&str; 6]| {
        format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:>w3$}  {:<w4$}  {}",
            c[0],
            c[1],
            c[2],
            c[3],
            c[4],
            c[5],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3],
            w4 = w[4]
        )
    };
    outln!("{}", line(head));
    for c in &cells {
        outln!("{}", line([&c[0], &c[1], &c[2], &c[3], &c[4], &c[5]]));
    }
}

/// `schedule install|remove|status`.
pub fn schedule(json: bool, r: &super::schedule::Report) {
    if json {
        print_json(&serde_json::to_value(r).expect("serialisable"));
        return;
    }
    if r.dry_run && r.action == "install" {
        for f in &r.files {
            outln!("# {}\n{}", f.path, f.content);
        }
        if let Some(l) = &r.crontab_line {
            outln!("# crontab line\n{l}");
        }
        return;
    }
    let via = r.via.unwrap_or("none");
    match r.action {
        "install" => {
            outln!(
                "{} {via} schedule ({}) of projectclone-backup",
                if r.changed {
                    "installed"
                } else {
                    "already installed, unchanged:"
                },
                r.schedule.as_deref().unwrap_or("")
            );
            for f in &r.files {
                outln!("file:         {}", f.path);
            }
            if let Some(l) = &r.crontab_line {
                outln!("crontab line: {l}");
            }
        }
        "remove" => {
            if r.via.is_none() {
                outln!("no schedule installed: nothing to remove");
                return;
            }
            let verb = if r.dry_run { "would remove" } else { "removed" };
            for f in &r.files {
                outln!("{verb}: {}", f.path);
            }
            if let Some(l) = &r.crontab_line {
                outln!("{verb} crontab line: {l}");
            }
            return;
        }
        _ => {
            if !r.installed {
                outln!("no schedule installed (`projectclone schedule install` makes one)");
                return;
            }
            outln!("installed:    {via}");
            for f in &r.files {
                outln!("file:         {}", f.path);
            }
            if let Some(l) = &r.crontab_line {
                outln!("crontab line: {l}");
            }
            outln!("schedule:     {}", r.schedule.as_deref().unwrap_or("?"));
        }
    }
    for c in &r.commands {
        outln!("runs:         {c}");
    }
    if let Some(e) = r.enabled {
        outln!(
            "enabled:      {}",
            if e {
                "yes"
            } else {
                "no (the systemd user instance did not answer)"
            }
        );
    }
    if r.action == "status" {
        outln!("next run:     {}", r.next_run.as_deref().unwrap_or("unknown"));
        outln!("last run:     {}", r.last_run.as_deref().unwrap_or("never, or unknown"));
        if let Some(res) = &r.last_result {
            outln!("last result:  {res}");
        }
    }
    if let Some(l) = &r.log {
        outln!("logs:         {l}");
    }
}

/// Many lines on stdout through one buffer: stdout flushes at every newline, so a listing
/// of a million entries would be a million writes. A closed pipe (`| head`) ends it.
fn out_lines(f: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) {
    let mut w = std::io::BufWriter::with_capacity(64 << 10, std::io::stdout().lock());
    let _ = f(&mut w).and_then(|()| w.flush());
}

pub fn ls(json: bool, long: bool, entries: &[LsEntry]) {
    if json {
        print_json(&serde_json::to_value(entries).expect("serialisable"));
        return;
    }
    out_lines(|w| {
        for e in entries {
            ls_line(w, long, e)?;
        }
        Ok(())
    });
}

/// `ls`, each entry printed as `walk` finds it, none kept in memory (a million entries
/// took 2.3 GB as one JSON value). Text goes straight to stdout. JSON goes to a temporary
/// file first, then to stdout once the walk succeeded: a walk that fails half way must
/// leave stdout with the one error document (`exit_error`), not half an array. The array
/// holds one compact object per line.
pub fn ls_streamed(
    json: bool,
    long: bool,
    walk: impl FnOnce(&mut dyn FnMut(LsEntry)) -> projectclone::Result<()>,
) -> anyhow::Result<()> {
    if !json {
        let mut w = std::io::BufWriter::with_capacity(64 << 10, std::io::stdout().lock());
        // A closed pipe (`| head`) stops the printing, not the walk.
        let mut open = true;
        let res = walk(&mut |e| {
            if open && ls_line(&mut w, long, &e).is_err() {
                open = false;
            }
        });
        if open {
            let _ = w.flush();
        }
        return Ok(res?);
    }
    let file =
        tempfile::tempfile().map_err(|e| anyhow::anyhow!("cannot create a temporary file for the listing: {e}"))?;
    let mut w = std::io::BufWriter::with_capacity(64 << 10, file);
    let mut failed: Option<std::io::Error> = None;
    let mut first = true;
    let res = walk(&mut |e| {
        if failed.is_some() {
            return;
        }
        let r = w
            .write_all(if first { b"[\n" } else { b",\n" })
            .and_then(|()| serde_json::to_writer(&mut w, &e).map_err(std::io::Error::other));
        first = false;
        if let Err(e) = r {
            failed = Some(e);
        }
    });
    res?;
    if let Some(e) = failed {
        anyhow::bail!("cannot write the listing to a temporary file: {e}");
    }
    w.write_all(if first { b"[]\n" } else { b"\n]\n" })?;
    let mut file = w.into_inner().map_err(|e| e.into_error())?;
    std::io::Seek::rewind(&mut file)?;
    let _ = std::io::copy(&mut file, &mut std::io::stdout().lock());
    Ok(())
}

fn ls_line(w: &mut dyn Write, long: bool, e: &LsEntry) -> std::io::Result<()> {
    if long {
        writeln!(
            w,
            "{:<8} {:>6o} {:>5}:{:<5} {:>12} {} {}{}",
            e.kind,
            e.mode & 0o7777,
            e.uid,
            e.gid,
            e.size,
            e.mtime,
            e.path,
            e.link_target.as_ref().map(|t| format!(" -> {t}")).unwrap_or_default()
        )
    } else {
        writeln!(w, "{}", e.path)
    }
}

pub fn diff(json: bool, changes: &[Change]) {
    if json {
        print_json(&serde_json::to_value(changes).expect("serialisable"));
        return;
    }
    out_lines(|w| {
        for c in changes {
            writeln!(w, "{:<4} {}", c.change, c.path)?;
        }
        Ok(())
    });
}

pub fn restore(cli: &Cli, id: &SnapshotId, opts: &RestoreOptions, res: &RestoreResult) {
    let p = &res.plan;
    if opts.dry_run && !cli.json {
        out_lines(|w| {
            for item in &p.items {
                let what = match item {
                    Item::Dir { .. } => "dir",
                    Item::File { .. } => "file",
                    Item::Symlink { .. } => "symlink",
                    Item::Special { .. } => "special",
                    Item::HardLink { .. } => "hardlink",
                };
                writeln!(w, "{what:<8} {}", format_name(item.rel()))?;
            }
            Ok(())
        });
    }
    for (p, e) in &res.errors {
        entry_error("restore.entry_failed", p, e);
    }
    let unmatched = &res.plan.unmatched_includes;
    if !opts.includes.is_empty() && unmatched.len() == opts.includes.len() {
        report::warning(
            "restore.include_unmatched",
            &format!(
                "no --include pattern ({}) matches an entry of snapshot {}: nothing {} restored (`projectclone ls {}` lists what it holds)",
                unmatched
                    .iter()
                    .map(|p| format!("{p:?}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                id.short(),
                if opts.dry_run { "would be" } else { "was" },
                id.short()
            ),
            &[("snapshot", json!(id.to_hex())), ("patterns", json!(unmatched))],
        );
    } else {
        for pat in unmatched {
            report::warning(
                "restore.include_unmatched",
                &format!("--include {pat:?} matches no entry of snapshot {}", id.short()),
                &[("snapshot", json!(id.to_hex())), ("pattern", json!(pat))],
            );
        }
    }
    if cli.json {
        print_json(&json!({
            "snapshot_id": id.to_hex(),
            "target": opts.target.display().to_string(),
            "dry_run": opts.dry_run,
            "files": res.files,
            "dirs": res.dirs,
            "other": res.other,
            "bytes": res.bytes,
            "bytes_written": res.bytes_written,
            "errors": res.errors.iter().map(|(p, e)| json!({"path": p, "error": e})).collect::<Vec<_>>(),
            "unmatched_includes": res.plan.unmatched_includes,
        }));
    } else {
        let msg = format!(
            "{} snapshot {}: {} files, {} dirs{}, {}{}",
            if opts.dry_run { "would restore" } else { "restored" },
            id.short(),
            res.files,
            res.dirs,
            others(res.other),
            bytesize::ByteSize(res.bytes),
            if res.errors.is_empty() {
                String::new()
            } else {
                format!(
                    "; {} error(s), {} of {} files and {} of {} dirs not restored",
                    res.errors.len(),
                    p.files - res.files.min(p.files),
                    p.files,
                    p.dirs - res.dirs.min(p.dirs),
                    p.dirs
                )
            }
        );
        report::info(
            "restore.summary",
            &msg,
            &[
                ("snapshot", json!(id.to_hex())),
                ("files", json!(res.files)),
                ("dirs", json!(res.dirs)),
                ("other", json!(res.other)),
                ("bytes", json!(res.bytes)),
                ("errors", json!(res.errors.len())),
            ],
        );
    }
}

/// Unix seconds as RFC 3339 UTC.
fn unix_time(t: i64) -> String {
    format_time(&projectclone::format::Time { secs: t, nanos: 0 }, 0)
}

pub fn check(json: bool, r: &CheckReport) {
    if json {
        print_json(&json!({
            "ok": r.ok(),
            "snapshots": r.snapshots,
            "packs": r.packs,
            "trees": r.trees,
            "blobs_read": r.blobs_read,
            "errors": r.errors,
            "damaged_snapshots": r.damaged_snapshots,
            "unreferenced_packs": r.unreferenced_packs,
            "unused_packs": r.unused_packs,
            "lost_chunks": r.lost_chunks,
            "unindexed_chunks": r.unindexed_chunks,
            "damaged_packs": r.damaged_packs,
            "advice": check_advice(r),
            "resumed_from": r.resumed.map(|(t, _)| unix_time(t)),
            "rolling": r.rolling.as_ref().map(|g| json!({
                "within_days": g.within_days,
                "packs_read": g.packs_read,
                "bytes_read": g.bytes_read,
                "packs": g.packs,
                "never_read": g.never_read,
                "oldest_read": g.oldest_read.map(unix_time),
                "overdue": g.overdue,
            })),
        }));
        return;
    }
    if let Some((started, n)) = r.resumed
        && !report::quiet()
    {
        outln!(
            "resumed the check --read-data started {}: {n} pack(s) it had read were not read again",
            unix_time(started)
        );
    }
    if let Some(g) = &r.rolling
        && !report::quiet()
    {
        outln!(
            "rolling: read {} of {} pack(s) ({}); {}",
            g.packs_read,
            g.packs,
            bytesize::ByteSize(g.bytes_read),
            match (g.overdue, g.never_read) {
                (0, 0) => format!(
                    "every pack was read within the last {} day(s){}",
                    g.within_days,
                    g.oldest_read
                        .map(|t| format!(" (the oldest read {})", unix_time(t)))
                        .unwrap_or_default()
                ),
                (0, n) => format!(
                    "{n} not read yet, each due within {} day(s) of when it was first seen; the rest read within them",
                    g.within_days
                ),
                (o, _) => format!("{o} pack(s) not read within {} day(s) (a read failed)", g.within_days),
            }
        );
    }
    for e in &r.errors {
        outln!("error: {}", text(e, false));
    }
    if report::quiet() {
        // Errors only: what is damaged, and nothing when all is well.
        for s in &r.damaged_snapshots {
            outln!("error: damaged snapshot: {}", text(s, false));
        }
        return;
    }
    for p in &r.unreferenced_packs {
        if r.unindexed_chunks > 0 {
            outln!(
                "note: pack {p} is not referenced by any index (if it holds the unindexed chunks, `repair index` recovers them)"
            );
        } else {
            outln!("note: pack {p} is not referenced by any index (left by an interrupted backup; prune removes it)");
        }
    }
    for p in &r.unused_packs {
        outln!("note: pack {p} is used by no snapshot (prune removes it)");
    }
    for s in &r.damaged_snapshots {
        outln!("damaged snapshot: {}", text(s, false));
    }
    for a in check_advice(r) {
        outln!("what to do: {a}");
    }
    outln!(
        "{} snapshots, {} packs, {} trees{}: {}",
        r.snapshots,
        r.packs,
        r.trees,
        if r.blobs_read > 0 {
            format!(", {} blobs read", r.blobs_read)
        } else {
            String::new()
        },
        if r.ok() { "no errors found" } else { "DAMAGE FOUND" }
    );
}

/// What the user can do about what `check` found, most useful first.
fn check_advice(r: &CheckReport) -> Vec<String> {
    let mut out = Vec::new();
    if r.unindexed_chunks > 0 {
        out.push(format!(
            "{} chunk(s) that snapshots use are stored in packs that no index lists (an index delta was \
             lost): run `projectclone repair index` to index them again. Prune refuses to run until then.",
            r.unindexed_chunks
        ));
    }
    if r.lost_chunks > 0 || !r.damaged_packs.is_empty() {
        out.push(
            "data is missing or damaged. If a copy of the affected packs exists elsewhere, put it back and run \
             `projectclone check` again. Otherwise `projectclone repair index` keeps what the damaged packs still \
             hold, a new backup of the same files stores their lost chunks again (old snapshots that share them \
             become whole again), and `projectclone repair snapshots` rewrites the snapshots that remain damaged \
             without their lost files."
                .to_string(),
        );
    }
    out
}

pub fn snapshot_stats(json: bool, id: &SnapshotId, s: &SnapshotStats) {
    if json {
        let mut v = serde_json::to_value(s).expect("serialisable");
        v["snapshot_id"] = json!(id.to_hex());
        print_json(&v);
        return;
    }
    outln!("snapshot {}", id.short());
    outln!("  files:          {}", s.files);
    outln!("  directories:    {}", s.dirs);
    outln!("  other entries:  {}", s.other);
    outln!("  restore size:   {}", bytesize::ByteSize(s.total_size));
    outln!(
        "  unique chunks:  {} ({} raw, {} stored)",
        s.unique_chunks,
        bytesize::ByteSize(s.unique_raw_bytes),
        bytesize::ByteSize(s.unique_stored_bytes)
    );
}

pub fn repo_stats(json: bool, s: &RepoStats) {
    if json {
        print_json(&serde_json::to_value(s).expect("serialisable"));
        return;
    }
    outln!("snapshots:      {}", s.snapshots);
    outln!("packs:          {} ({})", s.packs, bytesize::ByteSize(s.pack_bytes));
    outln!("blobs:          {}", s.blobs);
    outln!("raw data:       {}", bytesize::ByteSize(s.raw_bytes));
    outln!("stored blobs:   {}", bytesize::ByteSize(s.stored_blob_bytes));
    if s.stored_blob_bytes > 0 {
        outln!(
            "ratio:          {:.2}x",
            s.raw_bytes as f64 / s.stored_blob_bytes as f64
        );
    }
}

pub fn prune(cli: &Cli, p: &projectclone::prune::PrunePlan) {
    if cli.json {
        print_json(&serde_json::to_value(p).expect("serialisable"));
        return;
    }
    // With `-q` a prune that acted says nothing; the plan of a `--dry-run` is what was
    // asked for and is printed.
    if cli.quiet && !p.dry_run {
        return;
    }
    let mut group = None;
    for s in &p.snapshots {
        if let Some(g) = s.group.filter(|g| group != Some(*g))
            && let Some(pg) = p.groups.get(g)
        {
            group = Some(g);
            outln!(
                "group {}: keep {}, remove {}",
                text(&pg.key.to_string(), false),
                pg.keep,
                pg.remove
            );
        }
        outln!(
            "{}{} {}  {}",
            if group.is_some() { "  " } else { "" },
            if s.keep { "keep  " } else { "remove" },
            short(&s.id, 8),
            text(&s.reasons.join(", "), false)
        );
    }
    outln!(
        "{} snapshot(s) {}",
        p.forgotten,
        if p.dry_run { "would be removed" } else { "removed" }
    );
    if !p.deleted_packs.is_empty() {
        outln!(
            "{} condemned pack(s) {}deleted, {} freed",
            p.deleted_packs.len(),
            if p.dry_run { "would be " } else { "" },
            bytesize::ByteSize(p.deleted_bytes)
        );
    }
    if !p.uncondemned_packs.is_empty() {
        outln!(
            "{} condemned pack(s) are needed again and were kept",
            p.uncondemned_packs.len()
        );
    }
    if !p.reindexed_packs.is_empty() {
        outln!(
            "{} pack(s) that no index listed hold data the snapshots use: indexed again first",
            p.reindexed_packs.len()
        );
    }
    if !p.damaged_packs_kept.is_empty() {
        outln!(
            "{} pack(s) known to be damaged were left alone: `projectclone repair index` salvages them",
            p.damaged_packs_kept.len()
        );
    }
    if !p.leftover_snapshots.is_empty() {
        outln!(
            "{} snapshot object(s) an interrupted forget left behind {} deleted",
            p.leftover_snapshots.len(),
            if p.dry_run { "would be" } else { "were" }
        );
    }
    if !p.kept_for_resume.is_empty() {
        outln!(
            "{} pack(s) of an interrupted backup were kept: the next backup reuses them (collected once a day old)",
            p.kept_for_resume.len()
        );
    }
    if !p.repacked_packs.is_empty() {
        outln!(
            "{} partly used pack(s) {} repacked ({} still in use copied)",
            p.repacked_packs.len(),
            if p.dry_run { "would be" } else { "were" },
            bytesize::ByteSize(p.repacked_bytes)
        );
    }
    if !p.condemned_packs.is_empty() || !p.repacked_packs.is_empty() {
        outln!(
            "{} unused pack(s) ({}){} {} condemned{}",
            p.condemned_packs.len(),
            bytesize::ByteSize(p.condemned_bytes),
            if p.repacked_packs.is_empty() {
                String::new()
            } else {
                format!(" and {} repacked pack(s)", p.repacked_packs.len())
            },
            if p.dry_run { "would be" } else { "were" },
            if p.dry_run {
                "; a real run deletes them at once if no other client holds a lock then"
            } else if p.waiting_for.is_empty() {
                " and, with no other client holding a lock, deleted at once"
            } else {
                ""
            }
        );
    }
    if !p.waiting_packs.is_empty() || !p.waiting_for.is_empty() {
        outln!("condemned packs are kept until these clients finish; the first prune after that frees the space:");
        for w in &p.waiting_for {
            outln!("  {}", text(w, false));
        }
    }
}

pub fn repair_index(json: bool, r: &projectclone::repair::RepairIndexReport) {
    if json {
        print_json(&serde_json::to_value(r).expect("serialisable"));
        return;
    }
    // They act: with -q their narration is left out (README "Logs and verbosity").
    if report::quiet() {
        return;
    }
    let would = if r.dry_run { "would be " } else { "" };
    for p in &r.missing_packs {
        outln!("missing pack {p}: {would}dropped from the index");
    }
    for p in &r.salvaged_packs {
        outln!("damaged pack {p}: {would}dropped from the index after copying its intact blobs");
    }
    for p in &r.intact_packs {
        outln!("pack {p} was marked damaged but reads back intact: kept");
    }
    for p in &r.reindexed_packs {
        outln!("pack {p} (no index listed it) {would}indexed");
    }
    for p in &r.unreadable_packs {
        outln!("unreadable pack {p}: left alone");
    }
    for o in &r.removed_objects {
        outln!("unreadable {}: {would}removed", text(o, false));
    }
    for o in &r.kept_unreadable {
        outln!(
            "unreadable {}: left alone (snapshots: `repair snapshots --forget-unreadable`)",
            text(o, false)
        );
    }
    outln!(
        "index {}: {} packs, {} blobs",
        if r.dry_run {
            "cache rebuilt (dry run: the repository is unchanged)"
        } else {
            "rebuilt"
        },
        r.packs,
        r.blobs
    );
}

pub fn unlock(json: bool, removed: usize, all: bool) {
    if json {
        print_json(&json!({"removed": removed}));
    } else if report::quiet() {
    } else if all {
        outln!("{removed} lock(s) removed");
    } else {
        outln!("{removed} stale lock(s) removed");
    }
}

pub fn keys(json: bool, keys: &[(String, i64, Option<projectclone::crypto::KdfParams>)], current: &str) {
    if json {
        print_json(&serde_json::Value::Array(
            keys.iter()
                .map(|(n, c, k)| json!({"id": n, "current": n == current, "created": format_time(&projectclone::format::Time { secs: c.div_euclid(1_000_000_000), nanos: c.rem_euclid(1_000_000_000) as u32 }, 0), "kdf": k.map(|k| json!({"m_cost": k.m_cost, "t_cost": k.t_cost, "p_cost": k.p_cost}))}))
                .collect(),
        ));
        return;
    }
    for (n, c, k) in keys {
        let t = format_time(
            &projectclone::format::Time {
                secs: c.div_euclid(1_000_000_000),
                nanos: c.rem_euclid(1_000_000_000) as u32,
            },
            0,
        );
        let kdf = k
            .map(|k| format!("argon2id m={}KiB t={} p={}", k.m_cost, k.t_cost, k.p_cost))
            .unwrap_or_else(|| "no password (insecure)".into());
        outln!(
            "{} {}  {}  {}",
            if n == current { "*" } else { " " },
            short(n, 12),
            t,
            kdf
        );
    }
}

pub fn key_changed(json: bool, what: &str, name: &str) {
    if json {
        print_json(&json!({"result": what, "id": name}));
    } else {
        report::info(
            "key.changed",
            &format!("{what}: {}", short(name, 12)),
            &[("result", json!(what)), ("key", json!(name))],
        );
    }
}

pub fn repair_snapshots(json: bool, r: &projectclone::repair::RepairReport) {
    if json {
        print_json(&serde_json::to_value(r).expect("serialisable"));
        return;
    }
    // They act: with -q their narration is left out (README "Logs and verbosity").
    if report::quiet() {
        return;
    }
    for s in &r.repaired {
        match &s.new {
            Some(n) => outln!(
                "snapshot {} repaired as {}: {} path(s) dropped",
                short(&s.old, 8),
                short(n, 8),
                s.dropped.len()
            ),
            None => outln!(
                "snapshot {} would be repaired: {} path(s) dropped",
                short(&s.old, 8),
                s.dropped.len()
            ),
        }
        for d in &s.dropped {
            outln!("  dropped {}", text(d, false));
        }
    }
    for p in &r.reindexed_packs {
        outln!(
            "pack {p} (no index listed it) {} first: its data is not lost",
            if r.dry_run { "would be indexed" } else { "indexed" }
        );
    }
    for u in &r.unreadable {
        let removed = r.removed_unreadable.iter().any(|id| u.contains(id.as_str()));
        outln!(
            "unreadable {}{}",
            text(u, false),
            if removed {
                ": removed"
            } else {
                " (`--forget-unreadable` removes it)"
            }
        );
    }
    if r.repaired.is_empty() {
        outln!("no damaged snapshots");
    } else if !r.dry_run && r.originals_kept {
        outln!("the damaged originals are kept; `--forget-originals` removes them once you no longer need them");
    }
}

pub fn export(cli: &Cli, id: &SnapshotId, res: &ExportResult) {
    let path = res.path.display().to_string();
    if res.dry_run && !cli.json {
        for (action, name) in &res.entries {
            let a = serde_json::to_value(action).expect("serialisable");
            outln!("{:<8} {}", a.as_str().unwrap_or_default(), format_name(name));
        }
    }
    for (p, why) in &res.skipped {
        report::warning(
            "export.left_out",
            &format!("{p} left out: {why}"),
            &[("path", json!(p)), ("reason", json!(why))],
        );
    }
    for (p, e) in &res.errors {
        entry_error("export.entry_failed", p, e);
    }
    if cli.json {
        print_json(&json!({
            "snapshot_id": id.to_hex(),
            "path": path,
            "dry_run": res.dry_run,
            "files": res.files,
            "dirs": res.dirs,
            "other": res.other,
            "bytes": res.bytes,
            "bytes_written": res.bytes_written,
            "linked": res.linked,
            "linked_bytes": res.linked_bytes,
            "copied_after_link_failure": res.copied_after_link_failure,
            "previous": res.previous.as_ref().map(|p| p.display().to_string()),
            "manifest": res.manifest.as_ref().map(|p| p.display().to_string()),
            "removed": res.removed.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "cleaned": res.cleaned.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "skipped": res.skipped.iter().map(|(p, w)| json!({"path": p, "reason": w})).collect::<Vec<_>>(),
            "errors": res.errors.iter().map(|(p, e)| json!({"path": p, "error": e})).collect::<Vec<_>>(),
            "entries": res.entries.iter().map(|(a, n)| json!({"action": a, "path": format_name(n)})).collect::<Vec<_>>(),
        }));
        return;
    }
    if cli.quiet {
        return;
    }
    for p in &res.cleaned {
        report::note(
            "export.cleaned",
            &format!("removed {} (left by an interrupted export)", local_path(p)),
            &[("path", json!(local_path(p)))],
        );
    }
    if !res.errors.is_empty() {
        report::info(
            "export.summary",
            &format!(
                "export of snapshot {} failed: {} error(s); nothing was written at {}",
                id.short(),
                res.errors.len(),
                local_path(&res.path)
            ),
            &[("snapshot", json!(id.to_hex())), ("errors", json!(res.errors.len()))],
        );
        return;
    }
    let dest = local_path(&res.path);
    let verb = if res.dry_run { "would export" } else { "exported" };
    let mut line = format!(
        "{verb} snapshot {} to {dest}: {} files, {} dirs{}, {}",
        id.short(),
        res.files,
        res.dirs,
        others(res.other),
        bytesize::ByteSize(res.bytes)
    );
    if let Some(prev) = &res.previous {
        line.push_str(&format!(
            "; {} file(s) ({}) {} from {}",
            res.linked,
            bytesize::ByteSize(res.linked_bytes),
            if res.dry_run { "would be linked" } else { "linked" },
            local_path(prev)
        ));
    }
    if res.copied_after_link_failure > 0 {
        line.push_str(&format!(
            "; {} unchanged file(s) copied because linking failed",
            res.copied_after_link_failure
        ));
    }
    report::info(
        "export.summary",
        &line,
        &[
            ("snapshot", json!(id.to_hex())),
            ("path", json!(dest)),
            ("files", json!(res.files)),
            ("dirs", json!(res.dirs)),
            ("other", json!(res.other)),
            ("bytes", json!(res.bytes)),
        ],
    );
    if let Some(m) = &res.manifest {
        report::info(
            "export.manifest",
            &format!(
                "{} {}",
                if res.dry_run { "would write" } else { "wrote" },
                local_path(m)
            ),
            &[("path", json!(local_path(m)))],
        );
    }
    for p in &res.removed {
        report::info(
            "export.removed",
            &format!(
                "{} {}",
                if res.dry_run { "would remove" } else { "removed" },
                local_path(p)
            ),
            &[("path", json!(local_path(p)))],
        );
    }
}

/// What the older tool's syntax would write with `--dry-run` (no snapshot, so no
/// listing): the view's name and the views `--keep` would remove.
pub fn old_view_plan(cli: &Cli, plan: &projectclone::export::OldViewPlan) {
    if cli.quiet {
        return;
    }
    report::info(
        "export.plan",
        &format!("would write {}", local_path(&plan.path)),
        &[("path", json!(local_path(&plan.path)))],
    );
    for p in &plan.removed {
        report::info(
            "export.plan_remove",
            &format!("would remove {}", local_path(p)),
            &[("path", json!(local_path(p)))],
        );
    }
}

pub fn import(cli: &Cli, rep: &projectclone::import::ImportReport) {
    for (p, why) in &rep.skipped {
        report::note(
            "import.skipped",
            &format!("{}: skipped: {why}", local_path(p)),
            &[("path", json!(local_path(p))), ("reason", json!(why))],
        );
    }
    for (p, e) in &rep.failed {
        entry_error("import.failed", &local_path(p), &e.to_string());
    }
    let res = &rep.imported;
    for i in res {
        for (p, e) in &i.result.errors {
            entry_error(
                "import.unreadable",
                &format!("{}: {}", local_path(&i.source), local_path(p)),
                e,
            );
        }
    }
    let time = |i: &projectclone::import::Imported| format_time(&i.parsed.time, i.parsed.utc_offset);
    if cli.json {
        print_json(&serde_json::Value::Array(
            res.iter()
                .map(|i| {
                    json!({
                        "source": i.source.display().to_string(),
                        "snapshot_id": i.result.snapshot_id.map(|s| s.to_hex()),
                        "dry_run": i.result.snapshot_id.is_none(),
                        "project": i.parsed.project,
                        "note": i.parsed.note,
                        "time": time(i),
                        "files_new": i.result.summary.files_new,
                        "files_changed": i.result.summary.files_changed,
                        "files_unmodified": i.result.summary.files_unmodified,
                        "data_added": i.result.summary.data_added,
                        "errors": i.result.errors.len(),
                    })
                })
                .collect(),
        ));
        return;
    }
    for i in res {
        match i.result.snapshot_id {
            Some(id) => outln!("{}  {}", id.to_hex(), local_path(&i.source)),
            None => report::info(
                "import.plan",
                &format!(
                    "would import {} as project {} ({}){}",
                    local_path(&i.source),
                    field(&i.parsed.project),
                    time(i),
                    i.parsed
                        .note
                        .as_ref()
                        .map(|n| format!(", note {n:?}"))
                        .unwrap_or_default()
                ),
                &[("path", json!(local_path(&i.source)))],
            ),
        }
    }
}

pub fn copy(json: bool, r: &projectclone::copy::CopyReport) {
    if json {
        print_json(&json!({
            "copied": r.copied.iter().map(|(f, t)| json!({"from": f.to_hex(), "to": t.map(|t| t.to_hex())})).collect::<Vec<_>>(),
            "skipped": r.skipped.iter().map(|s| s.to_hex()).collect::<Vec<_>>(),
            "data_added": r.data_added,
            "dry_run": r.dry_run,
        }));
        return;
    }
    // They act: with -q their narration is left out (README "Logs and verbosity").
    if report::quiet() {
        return;
    }
    for (from, to) in &r.copied {
        match to {
            Some(t) => outln!("snapshot {} copied as {}", from.short(), t.short()),
            None => outln!("snapshot {} would be copied", from.short()),
        }
    }
    for s in &r.skipped {
        outln!("snapshot {} is there already: skipped", s.short());
    }
    outln!(
        "{} snapshot(s) {}, {} skipped; {} {}",
        r.copied.len(),
        if r.dry_run { "to copy" } else { "copied" },
        r.skipped.len(),
        bytesize::ByteSize(r.data_added),
        if r.dry_run { "would be added" } else { "added" }
    );
}

pub fn forgot_vanished(
    json: bool,
    dry_run: bool,
    gone: &[(SnapshotId, projectclone::id::TreeId, projectclone::trust::Seen)],
    broken: &[projectclone::repo::BrokenLink],
) {
    let mut ids: Vec<SnapshotId> = gone.iter().map(|g| g.0).collect();
    let orphans: Vec<&projectclone::repo::BrokenLink> = broken.iter().filter(|l| !ids.contains(&l.missing)).collect();
    ids.extend(orphans.iter().map(|l| l.missing));
    if json {
        print_json(&json!({
            "dry_run": dry_run,
            "acknowledged": ids.iter().map(|id| id.to_hex()).collect::<Vec<_>>(),
        }));
        return;
    }
    if report::quiet() {
        return;
    }
    let done = if dry_run {
        "would be acknowledged: tombstone not written (dry run)"
    } else {
        "acknowledged: tombstone written"
    };
    for (id, _, _) in gone {
        outln!("snapshot {} {done}", id.short());
    }
    for link in orphans {
        let role = match link.how {
            projectclone::repo::Link::Parent => "the parent of",
            _ => "recorded by",
        };
        outln!(
            "snapshot {} ({role} {}, gone without a tombstone) {done}",
            link.missing.short(),
            link.witness.short()
        );
    }
    if ids.is_empty() {
        outln!("no vanished snapshots");
    }
}

pub fn trust(
    json: bool,
    pin: &Option<projectclone::trust::Pin>,
    seen: &std::collections::BTreeMap<SnapshotId, projectclone::trust::Seen>,
    dir: &Path,
    accepted: bool,
) {
    use projectclone::trust::SeenState;
    let count = |st: SeenState| seen.values().filter(|s| s.state == st).count();
    if json {
        print_json(&json!({
            "pin": pin,
            "state_folder": dir.display().to_string(),
            "snapshots_seen": seen.len(),
            "present": count(SeenState::Present),
            "forgotten": count(SeenState::Forgotten),
            "vanished": seen.iter().filter(|s| s.1.state == SeenState::Vanished).map(|s| s.0.to_hex()).collect::<Vec<_>>(),
        }));
        return;
    }
    // `trust accept` acts: quiet with -q; `trust show` is the report asked for.
    if accepted && report::quiet() {
        return;
    }
    if let Some(p) = pin {
        outln!("trusted since:   {}", p.since);
        outln!("first seen at:   {}", format_name(p.location.as_bytes()));
        outln!(
            "password:        {}",
            if p.insecure {
                "none (key stored in clear)"
            } else {
                "yes"
            }
        );
        outln!("key check:       {}", p.key_check);
        outln!("config digest:   {}", p.config);
    }
    outln!(
        "snapshots seen:  {} ({} present, {} forgotten, {} vanished)",
        seen.len(),
        count(SeenState::Present),
        count(SeenState::Forgotten),
        count(SeenState::Vanished)
    );
    outln!("kept in:         {}", dir.display());
}

/// One effective setting for `config`.
pub struct ConfigRow {
    pub key: String,
    pub value: serde_json::Value,
    pub source: String,
}

/// What `config` shows: the files that apply and every setting with its source.
pub struct ConfigReport {
    pub user_file: Option<PathBuf>,
    /// The profile chosen, and where that choice came from.
    pub profile: Option<(String, String)>,
    pub project_file: Option<PathBuf>,
    pub project_trusted: bool,
    /// Keys of an untrusted project file that are left out, with their lines.
    pub untrusted_keys: Vec<(String, usize)>,
    pub settings: Vec<ConfigRow>,
}

pub fn config(json: bool, r: &ConfigReport) {
    let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
    if json {
        print_json(&json!({
            "user_file": path(&r.user_file),
            "profile": r.profile.as_ref().map(|p| json!({"name": p.0, "source": p.1})),
            "project_file": path(&r.project_file),
            "project_trusted": r.project_trusted,
            "untrusted_keys": r.untrusted_keys.iter().map(|(k, l)| json!({"key": k, "line": l})).collect::<Vec<_>>(),
            "settings": r.settings.iter().map(|s| json!({"key": s.key, "value": s.value, "source": s.source})).collect::<Vec<_>>(),
        }));
        return;
    }
    let file = |p: &Option<PathBuf>| path(p).map_or("none".to_string(), |p| format_name(p.as_bytes()));
    outln!("user file:    {}", file(&r.user_file));
    if let Some((name, source)) = &r.profile {
        outln!("profile:      {} ({source})", format_name(name.as_bytes()));
    }
    outln!(
        "project file: {}{}",
        file(&r.project_file),
        match (&r.project_file, r.project_trusted) {
            (None, _) => "",
            (Some(_), true) => " (trusted)",
            (Some(_), false) => " (not trusted: it may set only excludes, tags, compression and retention)",
        }
    );
    for (key, line) in &r.untrusted_keys {
        outln!("  ignored: `{key}` at line {line} (only honoured once you run `projectclone config trust`)");
    }
    outln!();
    let width = r.settings.iter().map(|s| s.key.len()).max().unwrap_or(0);
    for s in &r.settings {
        let value = match &s.value {
            serde_json::Value::Null => "(none)".to_string(),
            serde_json::Value::String(v) => v.clone(),
            v => v.to_string(),
        };
        outln!(
            "{:width$}  {}  [{}]",
            s.key,
            format_name(value.as_bytes()),
            format_name(s.source.as_bytes())
        );
    }
}

pub fn config_trust(json: bool, dir: &Path, trusted: bool) {
    if json {
        print_json(&json!({"directory": dir.display().to_string(), "trusted": trusted}));
    } else if trusted {
        outln!(
            "trusted {}: its .projectclone.toml may now set repo, password-command, hooks and notifications",
            format_name(dir.as_os_str().as_encoded_bytes())
        );
    } else {
        outln!("no longer trusted: {}", format_name(dir.as_os_str().as_encoded_bytes()));
    }
}

/// With `--json`, what a command that fails prints on stdout, as its one document
/// (restic's `exit_error`; README "Exit codes"): `{"message_type": "exit_error", "code": N,
/// "message": "..."}`.
pub fn exit_error(code: u8, message: &str) {
    outln!(
        "{}",
        json!({"message_type": "exit_error", "code": code, "message": message})
    );
}

/// What `verify` found.
#[derive(serde::Serialize)]
pub struct VerifyReport {
    /// Snapshots present.
    pub snapshots: usize,
    /// Snapshots tombstones name.
    pub forgotten: usize,
    /// The digest of the anchor this state makes (what `--anchor` writes).
    pub digest: String,
    pub anchor: Option<AnchorReport>,
    pub errors: Vec<String>,
}

#[derive(serde::Serialize)]
pub struct AnchorReport {
    pub path: String,
    /// When the anchor compared with was made; `None`: there was none (it was made now).
    pub made: Option<String>,
    /// Snapshots it named (present and forgotten) that were checked.
    pub checked: usize,
    /// Whether it was written anew (only when nothing was wrong).
    pub updated: bool,
}

pub fn verify(cli: &Cli, r: &VerifyReport) {
    if cli.json {
        let mut v = serde_json::to_value(r).unwrap_or_default();
        v["ok"] = json!(r.errors.is_empty());
        print_json(&v);
        return;
    }
    for e in &r.errors {
        outln!("error: {}", text(e, false));
    }
    if report::quiet() {
        return;
    }
    let short = &r.digest[..projectclone::verify::SHORT_DIGEST];
    outln!(
        "{} snapshot(s) present, {} forgotten on purpose; {} problem(s)",
        r.snapshots,
        r.forgotten,
        r.errors.len()
    );
    if let Some(a) = &r.anchor {
        match &a.made {
            Some(made) => outln!(
                "anchor {}: the {} snapshot(s) it named at {made} checked",
                text(&a.path, false),
                a.checked
            ),
            None => outln!("anchor {}: none yet, made now", text(&a.path, false)),
        }
        if a.updated {
            outln!(
                "anchor {} written: digest {short} (keep it somewhere else too)",
                text(&a.path, false)
            );
        } else {
            outln!(
                "anchor {} left as it was: fix or acknowledge the problems first",
                text(&a.path, false)
            );
        }
    } else {
        outln!("digest {short} (verify --anchor FILE keeps it and checks against it next time)");
    }
}
