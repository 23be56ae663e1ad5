//! Settings from files: the user's `$XDG_CONFIG_HOME/projectclone/config.toml` (its top
//! level, and the `[profile.NAME]` table chosen with `-P/--profile`) and the project's
//! `.projectclone.toml` (the nearest one at or above the directory a command works on).
//!
//! Each key is taken from the first layer that sets it, in this order: flag, environment,
//! project file, profile, the user file's top level, built-in default. A list (`exclude`,
//! `tags`) is one value: a higher layer's list replaces a lower one's. Every value read is
//! checked when the file is loaded, so a bad one is an error naming the file, the line and
//! the key even when this command would not use it.
//!
//! A project file comes with the tree, which may be someone else's (a fresh clone): until
//! the user trusts its directory (`projectclone config trust`), it may set only the keys
//! that cannot run anything or send anything anywhere ([`UNTRUSTED_KEYS`]).

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};

/// An invalid setting: the message says what, where and what to do.
macro_rules! invalid {
    ($($t:tt)*) => { Error::Invalid(format!($($t)*)) };
}

macro_rules! bail {
    ($($t:tt)*) => { return Err(invalid!($($t)*)) };
}
use serde::Deserialize;
use toml::Spanned;

use crate::compress::Compression;

/// The project file's name.
pub const PROJECT_FILE: &str = ".projectclone.toml";

/// What a project file may set in a directory the user has not trusted: what to back up
/// and how to keep it, nothing that runs a command, reaches a server or reads a secret.
pub const UNTRUSTED_KEYS: &[&str] = &[
    "exclude",
    "exclude-caches",
    "one-file-system",
    "exclude-larger-than",
    "tags",
    "compression",
    "retention",
    "project",
    "group-by",
    "append-only",
];

/// One file's settings, as written (values checked, not yet merged).
#[derive(Deserialize, Default, Clone, Debug)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Layer {
    pub repo: Option<Spanned<String>>,
    #[serde(alias = "password_file")]
    pub password_file: Option<Spanned<String>>,
    pub password_command: Option<Spanned<String>>,
    #[serde(alias = "cache_dir")]
    pub cache_dir: Option<Spanned<String>>,
    pub exclude: Option<Spanned<Vec<String>>>,
    pub exclude_caches: Option<Spanned<bool>>,
    pub one_file_system: Option<Spanned<bool>>,
    /// A size as `--exclude-larger-than` takes it (`"100M"`).
    pub exclude_larger_than: Option<Spanned<String>>,
    pub compression: Option<Spanned<String>>,
    pub tags: Option<Spanned<Vec<String>>>,
    pub host: Option<Spanned<String>>,
    pub limit_upload: Option<Spanned<u64>>,
    pub limit_download: Option<Spanned<u64>>,
    pub storage_class: Option<Spanned<String>>,
    pub retention: Option<Spanned<Retention>>,
    /// The name of the project (default: the base name of its first path).
    pub project: Option<Spanned<String>>,
    /// How `prune` and `forget` group snapshots: `none` or a comma list of host, paths,
    /// project and tags.
    pub group_by: Option<Spanned<String>>,
    /// Open repositories append-only (`--append-only`): it only takes rights away, so a
    /// project file may set it too.
    pub append_only: Option<Spanned<bool>>,
    pub hooks: Option<Spanned<Hooks>>,
    pub notify: Option<Spanned<Vec<Notify>>>,
    pub export: Option<Spanned<ExportTable>>,
    /// Only in the user file.
    pub profile: Option<Spanned<BTreeMap<String, Spanned<Layer>>>>,
}

/// `[retention]`: the rules `prune` and `forget` apply when no `--keep-*` flag is given.
#[derive(Deserialize, serde::Serialize, Default, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Retention {
    pub keep_last: Option<u32>,
    pub keep_hourly: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
    pub keep_yearly: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_within: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keep_tag: Vec<String>,
}

/// `[export]`: defaults of the older tool's syntax (`projectclone NOTE …`): where its
/// views go and how many of a project's views are kept there.
#[derive(Deserialize, Default, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ExportTable {
    /// Destination folder instead of `~/project_backups` (`~` and `$VAR` expanded).
    pub dest: Option<String>,
    /// `--keep N` when the command line gives none.
    pub keep: Option<usize>,
}

/// `[hooks]`: shell commands (`sh -c`) run around commands.
#[derive(Deserialize, Default, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Hooks {
    pub pre_backup: Option<String>,
    pub post_backup: Option<String>,
    pub pre_restore: Option<String>,
    pub post_restore: Option<String>,
    pub pre_prune: Option<String>,
    pub post_prune: Option<String>,
    pub pre_check: Option<String>,
    pub post_check: Option<String>,
    pub pre_export: Option<String>,
    pub post_export: Option<String>,
    pub on_failure: Option<String>,
    /// How long one hook may run (humantime: `30s`, `5m`); default [`DEFAULT_HOOK_TIMEOUT`].
    pub timeout: Option<String>,
}

/// A hook that runs longer than this is stopped and counts as failed.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(3600);

impl Hooks {
    /// The hook for `when` (`pre`/`post`) of `command`, if set.
    pub fn get(&self, when: &str, command: &str) -> Option<&str> {
        let h = match (when, command) {
            ("pre", "backup") => &self.pre_backup,
            ("post", "backup") => &self.post_backup,
            ("pre", "restore") => &self.pre_restore,
            ("post", "restore") => &self.post_restore,
            ("pre", "prune") => &self.pre_prune,
            ("post", "prune") => &self.post_prune,
            ("pre", "check") => &self.pre_check,
            ("post", "check") => &self.post_check,
            ("pre", "export") => &self.pre_export,
            ("post", "export") => &self.post_export,
            _ => return None,
        };
        h.as_deref()
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
            .as_deref()
            .and_then(|t| humantime::parse_duration(t).ok())
            .unwrap_or(DEFAULT_HOOK_TIMEOUT)
    }
}

/// `[[notify]]`: one HTTP endpoint, or one notifier plugin, told when commands finish.
#[derive(Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Notify {
    /// The endpoint; empty for a plugin.
    #[serde(default)]
    pub url: String,
    /// `projectclone-notify-NAME` on `PATH` gets the event instead of an HTTP endpoint.
    #[serde(default)]
    pub plugin: Option<String>,
    /// `json` (default), `slack`, `discord` or `healthchecks`.
    #[serde(default)]
    pub format: Option<String>,
    /// `success`, `failure` (default: both).
    #[serde(default)]
    pub on: Option<Vec<String>>,
    /// Per request (humantime); default 10 s.
    #[serde(default)]
    pub timeout: Option<String>,
    /// Tries after the first; default 3.
    #[serde(default)]
    pub retries: Option<u32>,
}

/// Where a value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Flag,
    Env(&'static str),
    Project { file: PathBuf, line: usize },
    Profile { file: PathBuf, name: String, line: usize },
    User { file: PathBuf, line: usize },
    Default,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Flag => write!(f, "command line"),
            Source::Env(v) => write!(f, "environment {v}"),
            Source::Project { file, line } => write!(f, "project file {}:{line}", file.display()),
            Source::Profile { file, name, line } => write!(f, "profile {name} in {}:{line}", file.display()),
            Source::User { file, line } => write!(f, "user file {}:{line}", file.display()),
            Source::Default => write!(f, "default"),
        }
    }
}

/// A file read and checked.
#[derive(Clone, Debug)]
pub struct LoadedFile {
    pub path: PathBuf,
    text: String,
    pub layer: Layer,
}

impl LoadedFile {
    /// The 1-based line of a byte offset.
    pub fn line(&self, at: usize) -> usize {
        self.text[..at.min(self.text.len())].matches('\n').count() + 1
    }

    fn err(&self, span: Range<usize>, key: &str, msg: &str) -> Error {
        invalid!("{}:{}: `{key}`: {msg}", self.path.display(), self.line(span.start))
    }
}

/// Read and check a config file. `Ok(None)`: there is none.
pub fn load(path: &Path, user_file: bool) -> Result<Option<LoadedFile>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => bail!("config file {}: {e}", path.display()),
    };
    let layer: Layer = match toml::from_str(&text) {
        Ok(l) => l,
        Err(e) => {
            let at = e.span().map(|s| s.start.min(text.len()));
            let line = at.map(|a| text[..a].matches('\n').count() + 1);
            // The key of the line the error points at (a type error names only the type).
            let key = at
                .and_then(|a| text[..a].rsplit('\n').next().map(|pre| (pre, &text[a..])))
                .map(|(pre, post)| format!("{pre}{}", post.split('\n').next().unwrap_or("")))
                .and_then(|l| l.split_once('=').map(|(k, _)| k.trim().to_string()))
                .filter(|k| !k.is_empty() && !e.message().contains(&format!("`{k}`")));
            bail!(
                "{}{}: {}{}; fix or remove the file",
                path.display(),
                line.map(|l| format!(":{l}")).unwrap_or_default(),
                key.map(|k| format!("`{k}`: ")).unwrap_or_default(),
                e.message().trim_end()
            );
        }
    };
    let f = LoadedFile {
        path: path.to_path_buf(),
        text,
        layer,
    };
    if let Some(p) = &f.layer.profile {
        if !user_file {
            return Err(f.err(
                p.span(),
                "profile",
                "profiles belong in the user file ($XDG_CONFIG_HOME/projectclone/config.toml), not in a project",
            ));
        }
        for (name, l) in p.get_ref() {
            if l.get_ref().profile.is_some() {
                return Err(f.err(l.span(), &format!("profile.{name}.profile"), "profiles do not nest"));
            }
            check_layer(&f, l.get_ref())?;
        }
    }
    check_layer(&f, &f.layer)?;
    Ok(Some(f))
}

/// Check every value of `l` (read from `f`).
fn check_layer(f: &LoadedFile, l: &Layer) -> Result<()> {
    if let Some(v) = &l.exclude_larger_than {
        crate::backup::parse_size(v.get_ref()).map_err(|e| f.err(v.span(), "exclude-larger-than", &e))?;
    }
    if let Some(c) = &l.compression {
        c.get_ref()
            .parse::<Compression>()
            .map_err(|e| f.err(c.span(), "compression", &e))?;
    }
    if let (Some(a), Some(b)) = (&l.password_file, &l.password_command) {
        let first = a.span().start.min(b.span().start);
        return Err(f.err(
            first..first,
            "password-file",
            "password-file and password-command are both set: keep one",
        ));
    }
    for (key, v) in [
        ("repo", &l.repo),
        ("password-file", &l.password_file),
        ("cache-dir", &l.cache_dir),
    ] {
        if let Some(v) = v {
            if v.get_ref().trim().is_empty() {
                return Err(f.err(v.span(), key, "is empty"));
            }
            expand(v.get_ref()).map_err(|e| f.err(v.span(), key, &e))?;
        }
    }
    if let Some(p) = &l.project
        && p.get_ref().trim().is_empty()
    {
        return Err(f.err(
            p.span(),
            "project",
            "is empty: give the project a name, or remove the key",
        ));
    }
    if let Some(g) = &l.group_by {
        g.get_ref()
            .parse::<crate::select::GroupBy>()
            .map_err(|e| f.err(g.span(), "group-by", &e))?;
    }
    if let Some(r) = &l.retention
        && let Some(w) = &r.get_ref().keep_within
    {
        crate::prune::policy::parse_within(w).map_err(|e| f.err(r.span(), "retention.keep-within", &e.to_string()))?;
    }
    if let Some(x) = &l.export {
        if let Some(d) = &x.get_ref().dest {
            if d.trim().is_empty() {
                return Err(f.err(x.span(), "export.dest", "is empty"));
            }
            expand(d).map_err(|e| f.err(x.span(), "export.dest", &e))?;
        }
        if x.get_ref().keep == Some(0) {
            return Err(f.err(
                x.span(),
                "export.keep",
                "0 would remove every view, the new one too: give 1 or more, or leave it out to keep all",
            ));
        }
    }
    if let Some(h) = &l.hooks
        && let Some(t) = &h.get_ref().timeout
    {
        humantime::parse_duration(t).map_err(|e| {
            f.err(
                h.span(),
                "hooks.timeout",
                &format!("{t:?}: {e} (write e.g. 30s, 5m, 1h)"),
            )
        })?;
    }
    if let Some(n) = &l.notify {
        for (i, n0) in n.get_ref().iter().enumerate() {
            let key = format!("notify[{i}]");
            match (&n0.plugin, n0.url.is_empty()) {
                (Some(_), false) => {
                    return Err(f.err(n.span(), &key, "give url or plugin, not both"));
                }
                (None, true) => {
                    return Err(f.err(n.span(), &key, "give url (an http:// or https:// endpoint) or plugin"));
                }
                (Some(p), true) => {
                    if !crate::backend::plugin::valid_name(p) {
                        return Err(f.err(
                            n.span(),
                            &format!("{key}.plugin"),
                            &format!("{p:?}: a plugin name is lowercase letters, digits and -, starting with a letter"),
                        ));
                    }
                    if n0.format.is_some() {
                        return Err(f.err(
                            n.span(),
                            &format!("{key}.format"),
                            "a plugin gets the json event; leave format out",
                        ));
                    }
                }
                (None, false) => {
                    let url =
                        url::Url::parse(&n0.url).map_err(|e| f.err(n.span(), &format!("{key}.url"), &e.to_string()))?;
                    if !matches!(url.scheme(), "http" | "https") {
                        return Err(f.err(n.span(), &format!("{key}.url"), "must be an http:// or https:// URL"));
                    }
                }
            }
            if let Some(fmt) = &n0.format
                && !NOTIFY_FORMATS.contains(&fmt.as_str())
            {
                return Err(f.err(
                    n.span(),
                    &format!("{key}.format"),
                    &format!("{fmt:?}: use one of {}", NOTIFY_FORMATS.join(", ")),
                ));
            }
            for on in n0.on.iter().flatten() {
                if on != "success" && on != "failure" {
                    return Err(f.err(
                        n.span(),
                        &format!("{key}.on"),
                        &format!("{on:?}: use success and/or failure"),
                    ));
                }
            }
            if let Some(t) = &n0.timeout {
                humantime::parse_duration(t)
                    .map_err(|e| f.err(n.span(), &format!("{key}.timeout"), &format!("{t:?}: {e}")))?;
            }
        }
    }
    Ok(())
}

pub const NOTIFY_FORMATS: &[&str] = &["json", "slack", "discord", "healthchecks"];

/// `~` and `$VAR`/`${VAR}` expanded, as a shell would; an unset variable is an error.
pub fn expand(s: &str) -> std::result::Result<String, String> {
    shellexpand::full(s)
        .map(|c| c.into_owned())
        .map_err(|e| format!("{s:?}: ${} is not set", e.var_name))
}

/// The user config file: `$XDG_CONFIG_HOME/projectclone/config.toml`.
pub fn user_config_path() -> Option<PathBuf> {
    directories::BaseDirs::new().map(|d| d.config_dir().join("projectclone").join("config.toml"))
}

/// Where a client keeps what it remembers (trusted projects, repository pins):
/// `$XDG_STATE_HOME/projectclone`.
pub fn state_base() -> Option<PathBuf> {
    directories::BaseDirs::new().and_then(|b| b.state_dir().map(|d| d.join("projectclone")))
}

/// The default repository: `$XDG_DATA_HOME/projectclone/repo`.
pub fn default_repo() -> Option<PathBuf> {
    directories::BaseDirs::new().map(|d| d.data_dir().join("projectclone").join("repo"))
}

/// The nearest project file at or above `dir`.
pub fn find_project_file(dir: &Path) -> Option<PathBuf> {
    let start = std::path::absolute(dir).ok()?;
    start.ancestors().map(|d| d.join(PROJECT_FILE)).find(|p| p.is_file())
}

/// The directories whose project files the user trusts, kept outside any tree:
/// `$XDG_STATE_HOME/projectclone/trusted-projects.json`.
pub struct TrustedDirs {
    path: PathBuf,
}

impl TrustedDirs {
    pub fn new(state_dir: &Path) -> TrustedDirs {
        TrustedDirs {
            path: state_dir.join("trusted-projects.json"),
        }
    }

    pub fn list(&self) -> Result<Vec<PathBuf>> {
        match std::fs::read(&self.path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| invalid!("{}: {e}; fix or remove it", self.path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(invalid!("{}: {e}", self.path.display())),
        }
    }

    pub fn contains(&self, dir: &Path) -> Result<bool> {
        let Ok(c) = std::fs::canonicalize(dir) else {
            return Ok(false);
        };
        Ok(self.list()?.contains(&c))
    }

    /// Trust (`true`) or stop trusting `dir`. Returns its canonical path.
    pub fn set(&self, dir: &Path, trusted: bool) -> Result<PathBuf> {
        let c = std::fs::canonicalize(dir).map_err(|e| invalid!("{}: {e}", dir.display()))?;
        let mut l = self.list()?;
        l.retain(|d| d != &c);
        if trusted {
            l.push(c.clone());
        }
        l.sort();
        if let Some(parent) = self.path.parent() {
            crate::platform::create_private_dirs(parent).map_err(|e| invalid!("{}: {e}", parent.display()))?;
        }
        let tmp = self.path.with_extension(format!("tmp-{:08x}", rand::random::<u32>()));
        std::fs::write(
            &tmp,
            serde_json::to_vec_pretty(&l).map_err(|e| invalid!("{}: {e}", tmp.display()))?,
        )
        .map_err(|e| invalid!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| invalid!("{}: {e}", self.path.display()))?;
        Ok(c)
    }
}

/// The files that apply to one run, merged on demand.
#[derive(Default, Debug)]
pub struct Files {
    pub user: Option<LoadedFile>,
    /// The chosen profile's name (it exists in `user`).
    pub profile: Option<String>,
    pub project: Option<LoadedFile>,
    /// Whether the user trusts the project file's directory.
    pub project_trusted: bool,
    /// Keys of an untrusted project file that only a trusted one may set, with their
    /// lines (only when loaded with `strict` false, for `config` itself; their values are
    /// not used).
    pub untrusted: Vec<(&'static str, usize)>,
}

/// A value and where it came from.
#[derive(Clone, Debug)]
pub struct Setting<T> {
    pub value: T,
    pub source: Source,
}

impl Files {
    /// Load the user file (and check `profile` names one of its profiles) and the project
    /// file for `dir`; refuse trusted-only keys of an untrusted project file (`strict`), or
    /// list them in [`untrusted`](Self::untrusted) and leave the project file out.
    pub fn load(
        user_path: Option<&Path>,
        profile: Option<&str>,
        project_dir: Option<&Path>,
        trusted: Option<&TrustedDirs>,
        strict: bool,
    ) -> Result<Files> {
        let user = match user_path {
            Some(p) => load(p, true)?,
            None => None,
        };
        if let Some(name) = profile {
            let names: Vec<String> = user
                .as_ref()
                .and_then(|u| u.layer.profile.as_ref())
                .map(|p| p.get_ref().keys().cloned().collect())
                .unwrap_or_default();
            if !names.iter().any(|n| n == name) {
                bail!(
                    "profile {name:?} is not defined{}: add a [profile.{name}] table to {}",
                    if names.is_empty() {
                        String::new()
                    } else {
                        format!(" (defined: {})", names.join(", "))
                    },
                    user_path.map_or("the user config file".into(), |p| p.display().to_string())
                );
            }
        }
        let project = match project_dir.and_then(find_project_file) {
            Some(p) => load(&p, false)?,
            None => None,
        };
        let mut project_trusted = false;
        let mut untrusted = Vec::new();
        if let Some(p) = &project {
            let dir = p.path.parent().unwrap_or(Path::new("/"));
            project_trusted = match trusted {
                Some(t) => t.contains(dir)?,
                None => false,
            };
            if !project_trusted {
                untrusted = trusted_only_keys(p);
                if let (true, Some((key, line))) = (strict, untrusted.first()) {
                    bail!(
                        "{}:{line}: `{key}` is only honoured in a directory you trust: this file came with the \
                         tree and could run commands or send your data elsewhere (untrusted, it may set only {}). \
                         Read it, then run `projectclone config trust {}` (or remove the key)",
                        p.path.display(),
                        UNTRUSTED_KEYS.join(", "),
                        shell_quote(&dir.display().to_string())
                    );
                }
            }
        }
        Ok(Files {
            user,
            profile: profile.map(String::from),
            project,
            project_trusted,
            untrusted,
        })
    }

    /// The layers below flags and environment, highest first, with how to name each.
    fn layers(&self) -> Vec<(&Layer, Box<dyn Fn(usize) -> Source + '_>)> {
        let mut out: Vec<(&Layer, Box<dyn Fn(usize) -> Source + '_>)> = Vec::new();
        if let Some(p) = self.project.as_ref().filter(|_| self.untrusted.is_empty()) {
            out.push((
                &p.layer,
                Box::new(move |at| Source::Project {
                    file: p.path.clone(),
                    line: p.line(at),
                }),
            ));
        }
        if let (Some(u), Some(name)) = (&self.user, &self.profile)
            && let Some(l) = u.layer.profile.as_ref().and_then(|p| p.get_ref().get(name))
        {
            out.push((
                l.get_ref(),
                Box::new(move |at| Source::Profile {
                    file: u.path.clone(),
                    name: name.clone(),
                    line: u.line(at),
                }),
            ));
        }
        if let Some(u) = &self.user {
            out.push((
                &u.layer,
                Box::new(move |at| Source::User {
                    file: u.path.clone(),
                    line: u.line(at),
                }),
            ));
        }
        out
    }

    /// The first layer's value of a key (`get` picks it out of a layer).
    pub fn get<T: Clone>(&self, get: impl Fn(&Layer) -> Option<&Spanned<T>>) -> Option<Setting<T>> {
        for (l, source) in self.layers() {
            if let Some(v) = get(l) {
                return Some(Setting {
                    value: v.get_ref().clone(),
                    source: source(v.span().start),
                });
            }
        }
        None
    }

    /// A key of the `[export]` tables, from the first layer whose table sets it (the
    /// source names the table's line).
    pub fn export_key<T: Clone>(&self, get: impl Fn(&ExportTable) -> Option<&T>) -> Option<Setting<T>> {
        for (l, source) in self.layers() {
            if let Some(t) = &l.export
                && let Some(v) = get(t.get_ref())
            {
                return Some(Setting {
                    value: v.clone(),
                    source: source(t.span().start),
                });
            }
        }
        None
    }

    /// The password source from the files: a file or a command, from the first layer
    /// that names either.
    pub fn password(&self) -> Option<Setting<PasswordSource>> {
        for (l, source) in self.layers() {
            if let Some(f) = &l.password_file {
                return Some(Setting {
                    value: PasswordSource::File(f.get_ref().clone()),
                    source: source(f.span().start),
                });
            }
            if let Some(c) = &l.password_command {
                return Some(Setting {
                    value: PasswordSource::Command(c.get_ref().clone()),
                    source: source(c.span().start),
                });
            }
        }
        None
    }
}

/// Where a password comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PasswordSource {
    File(String),
    Command(String),
}

/// The keys of an (untrusted) project file outside [`UNTRUSTED_KEYS`], with their lines.
fn trusted_only_keys(f: &LoadedFile) -> Vec<(&'static str, usize)> {
    let l = &f.layer;
    let spans: [(&'static str, Option<Range<usize>>); 12] = [
        ("repo", l.repo.as_ref().map(|v| v.span())),
        ("password-file", l.password_file.as_ref().map(|v| v.span())),
        ("password-command", l.password_command.as_ref().map(|v| v.span())),
        ("cache-dir", l.cache_dir.as_ref().map(|v| v.span())),
        ("host", l.host.as_ref().map(|v| v.span())),
        ("limit-upload", l.limit_upload.as_ref().map(|v| v.span())),
        ("limit-download", l.limit_download.as_ref().map(|v| v.span())),
        ("storage-class", l.storage_class.as_ref().map(|v| v.span())),
        ("hooks", l.hooks.as_ref().map(|v| v.span())),
        ("notify", l.notify.as_ref().map(|v| v.span())),
        ("export", l.export.as_ref().map(|v| v.span())),
        ("profile", l.profile.as_ref().map(|v| v.span())),
    ];
    let mut out: Vec<(&'static str, usize)> = spans
        .into_iter()
        .filter_map(|(k, s)| s.map(|s| (k, f.line(s.start))))
        .collect();
    out.sort_by_key(|(_, line)| *line);
    out
}

/// `s` quoted for a shell when it needs it.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+:@%,=".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let d = tempfile::tempdir().unwrap();
        let cases = [
            ("repo = \"/x\"\nfoo = 1\n", ":2", "foo"),
            ("\n\ncompression = \"zstd:99\"\n", ":3", "compression"),
            (
                "tags = []\nexclude-larger-than = \"10 parsecs\"\n",
                ":2",
                "exclude-larger-than",
            ),
            ("exclude-caches = \"yes\"\n", ":1", "exclude-caches"),
            ("[retention]\nkeep-last = \"ten\"\n", ":2", "keep-last"),
            ("[retention]\nkeep-within = \"forever\"\n", ":1", "keep-within"),
            ("\ngroup-by = \"host,colour\"\n", ":2", "group-by"),
            ("project = \" \"\n", ":1", "project"),
            ("[[notify]]\nurl = \"ftp://x\"\n", ":1", "url"),
            ("[[notify]]\nurl = \"http://x\"\nformat = \"teams\"\n", ":1", "format"),
            ("[hooks]\npre-bakup = \"x\"\n", ":2", "pre-bakup"),
            (
                "password-file = \"a\"\npassword-command = \"b\"\n",
                ":1",
                "password-command",
            ),
            ("repo = \"$PCL_SURELY_UNSET_VAR/x\"\n", ":1", "PCL_SURELY_UNSET_VAR"),
        ];
        for (text, line, key) in cases {
            let p = file(d.path(), "c.toml", text);
            let e = load(&p, true).unwrap_err().to_string();
            assert!(e.contains(&format!("c.toml{line}")), "{text:?}: {e}");
            assert!(e.contains(key), "{text:?}: {e}");
        }
    }

    #[test]
    fn profiles_only_in_the_user_file_and_precedence_of_layers() {
        let d = tempfile::tempdir().unwrap();
        let user = file(
            d.path(),
            "config.toml",
            "repo = \"/user\"\ncompression = \"lz4\"\ntags = [\"u\"]\n[profile.work]\nrepo = \"/work\"\ntags = [\"w\"]\n",
        );
        let proj_dir = d.path().join("p/sub");
        std::fs::create_dir_all(&proj_dir).unwrap();
        file(&d.path().join("p"), PROJECT_FILE, "tags = [\"p\"]\n");
        let f = Files::load(Some(&user), Some("work"), Some(&proj_dir), None, true).unwrap();
        let tags = f.get(|l| l.tags.as_ref()).unwrap();
        assert_eq!(tags.value, vec!["p".to_string()]);
        assert!(matches!(tags.source, Source::Project { line: 1, .. }));
        let repo = f.get(|l| l.repo.as_ref()).unwrap();
        assert_eq!(repo.value, "/work");
        assert!(
            matches!(repo.source, Source::Profile { line: 5, .. }),
            "{:?}",
            repo.source
        );
        let c = f.get(|l| l.compression.as_ref()).unwrap();
        assert_eq!(c.value, "lz4");
        assert!(matches!(c.source, Source::User { line: 2, .. }));
        let e = Files::load(Some(&user), Some("home"), None, None, true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("work"), "{e}");
        file(&d.path().join("p"), PROJECT_FILE, "[profile.x]\ntags = []\n");
        let e = Files::load(Some(&user), None, Some(&proj_dir), None, true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("profiles belong in the user file"), "{e}");
    }

    #[test]
    fn untrusted_project_files_may_not_set_commands_or_destinations() {
        let d = tempfile::tempdir().unwrap();
        let state = d.path().join("state");
        let trusted = TrustedDirs::new(&state);
        let proj = d.path().join("proj");
        std::fs::create_dir_all(&proj).unwrap();
        file(
            &proj,
            PROJECT_FILE,
            "exclude = [\"*.log\"]\n\n[hooks]\npre-backup = \"curl evil\"\n",
        );
        let e = Files::load(None, None, Some(&proj), Some(&trusted), true)
            .unwrap_err()
            .to_string();
        assert!(e.contains(":3: `hooks`") && e.contains("config trust"), "{e}");
        trusted.set(&proj, true).unwrap();
        let f = Files::load(None, None, Some(&proj), Some(&trusted), true).unwrap();
        assert!(f.project_trusted);
        trusted.set(&proj, false).unwrap();
        assert!(Files::load(None, None, Some(&proj), Some(&trusted), true).is_err());
        file(
            &proj,
            PROJECT_FILE,
            "exclude = [\"*.log\"]\n[retention]\nkeep-last = 3\n",
        );
        let f = Files::load(None, None, Some(&proj), Some(&trusted), true).unwrap();
        assert!(!f.project_trusted);
    }
}
