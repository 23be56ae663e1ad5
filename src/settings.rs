//! The program's settings for scripts: see [`Settings`].

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::client::{BackupOptions, Credentials, OpenOptions, Repository};
use crate::config::{self, Files, PasswordSource, Setting, TrustedDirs};
use crate::error::{Error, Result};

/// The settings the `projectclone` program would use, so that a script backs up where and
/// how its user's commands do: the environment (`PROJECTCLONE_REPO`,
/// `PROJECTCLONE_PASSWORD_FILE`, `PROJECTCLONE_PASSWORD`, `PROJECTCLONE_PASSWORD_COMMAND`,
/// `PROJECTCLONE_CACHE_DIR`, `PROJECTCLONE_PROFILE`), then the project's
/// `.projectclone.toml` (the nearest at or above the project folder; its commands,
/// destinations and secrets only once the user trusts its folder with `projectclone config
/// trust`), then the chosen `[profile.NAME]` and the top level of
/// `$XDG_CONFIG_HOME/projectclone/config.toml`, then the defaults. Every value is checked
/// when the files are read: a bad one is an error naming the file, the line and the key.
///
/// What it carries: the repository location, the password source, the cache folder and
/// `append-only` ([`open_options`](Settings::open_options)), and the backup settings
/// `exclude`, `exclude-caches`, `one-file-system`, `exclude-larger-than`, `tags` and
/// `host` ([`backup_options`](Settings::backup_options)). Hooks and notifications are the
/// program's and are not run by the library.
///
/// Needs the `config` feature (on by default).
///
/// ```
/// use projectclone::Settings;
/// # let tmp = tempfile::tempdir()?;
/// let project = tmp.path().join("app");
/// std::fs::create_dir(&project)?;
/// std::fs::write(project.join(".projectclone.toml"), "exclude = [\"target/\"]\ntags = [\"app\"]\n")?;
/// // The project file is the highest file layer: its keys win over the user file's.
/// let settings = Settings::load(Some(&project), None)?;
/// assert_eq!(settings.excludes(), ["target/"]);
/// assert_eq!(settings.tags(), ["app"]);
/// assert!(settings.sources().iter().any(|(key, from)| *key == "tags" && from.contains(".projectclone.toml")));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Then back up as the program would:
///
/// ```no_run
/// use projectclone::{ErrorKind, NoProgress, Settings};
/// let project = std::path::Path::new("/home/me/app");
/// let settings = Settings::load(Some(project), None)?;
/// let mut repo = match settings.open() {
///     Err(e) if e.kind() == ErrorKind::NotFound => panic!("no repository at {} yet", settings.location()),
///     r => r?,
/// };
/// repo.backup(&settings.backup_options([project]), &NoProgress)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Settings {
    location: String,
    credentials: Option<Credentials>,
    open: OpenOptions,
    excludes: Vec<String>,
    exclude_caches: bool,
    one_file_system: bool,
    exclude_larger_than: Option<u64>,
    tags: Vec<String>,
    host: Option<String>,
    sources: Vec<(&'static str, String)>,
}

/// A non-empty environment variable.
fn env(var: &str) -> Option<OsString> {
    std::env::var_os(var).filter(|v| !v.is_empty())
}

/// A path-like setting of the files, `~` and `$VAR` expanded.
fn expanded(s: &Setting<String>) -> Result<String> {
    config::expand(&s.value).map_err(|e| Error::Invalid(format!("{}: {e}", s.source)))
}

impl Settings {
    /// Read the settings as the program would for a command working on `project_dir`
    /// (`None`: the current folder), with the profile `profile` (`None`:
    /// `PROJECTCLONE_PROFILE`, else none).
    ///
    /// See the example of [`Settings`].
    pub fn load(project_dir: Option<&Path>, profile: Option<&str>) -> Result<Settings> {
        let profile = match profile {
            Some(p) => Some(p.to_string()),
            None => env("PROJECTCLONE_PROFILE")
                .map(|p| p.into_string())
                .transpose()
                .map_err(|p| Error::Invalid(format!("PROJECTCLONE_PROFILE={p:?}: not UTF-8")))?,
        };
        let cwd;
        let project_dir = match project_dir {
            Some(d) => Some(d),
            None => {
                cwd = std::env::current_dir().ok();
                cwd.as_deref()
            }
        };
        let trusted = config::state_base().map(|d| TrustedDirs::new(&d));
        let files = Files::load(
            config::user_config_path().as_deref(),
            profile.as_deref(),
            project_dir,
            trusted.as_ref(),
            true,
        )?;
        Settings::from_files(&files, &env)
    }

    /// The settings of `files` below the environment `env` gives.
    fn from_files(files: &Files, env: &dyn Fn(&str) -> Option<OsString>) -> Result<Settings> {
        let mut sources = Vec::new();
        let location = if let Some(r) = env("PROJECTCLONE_REPO") {
            sources.push(("repo", "environment PROJECTCLONE_REPO".to_string()));
            r.into_string()
                .map_err(|r| Error::Invalid(format!("PROJECTCLONE_REPO={r:?}: not UTF-8")))?
        } else if let Some(s) = files.get(|l| l.repo.as_ref()) {
            sources.push(("repo", s.source.to_string()));
            expanded(&s)?
        } else {
            sources.push(("repo", "default".to_string()));
            let d = config::default_repo().ok_or_else(|| {
                Error::Invalid("cannot find the home directory for the default repository: name one".into())
            })?;
            d.to_str()
                .ok_or_else(|| Error::Invalid(format!("{}: not UTF-8: name the repository", d.display())))?
                .to_string()
        };
        let credentials = if let Some(f) = env("PROJECTCLONE_PASSWORD_FILE") {
            sources.push(("password", "environment PROJECTCLONE_PASSWORD_FILE".to_string()));
            Some(Credentials::PasswordFile(PathBuf::from(f)))
        } else if let Some(p) = env("PROJECTCLONE_PASSWORD") {
            sources.push(("password", "environment PROJECTCLONE_PASSWORD".to_string()));
            Some(Credentials::Password(zeroize::Zeroizing::new(
                crate::platform::into_bytes(p),
            )))
        } else if let Some(c) = env("PROJECTCLONE_PASSWORD_COMMAND") {
            sources.push(("password", "environment PROJECTCLONE_PASSWORD_COMMAND".to_string()));
            Some(Credentials::PasswordCommand(c.into_string().map_err(|c| {
                Error::Invalid(format!("PROJECTCLONE_PASSWORD_COMMAND={c:?}: not UTF-8"))
            })?))
        } else if let Some(s) = files.password() {
            sources.push(("password", s.source.to_string()));
            Some(match s.value {
                PasswordSource::File(f) => Credentials::PasswordFile(PathBuf::from(expanded(&Setting {
                    value: f,
                    source: s.source,
                })?)),
                PasswordSource::Command(c) => Credentials::PasswordCommand(c),
            })
        } else {
            None
        };
        let mut open = OpenOptions::new();
        if let Some(d) = env("PROJECTCLONE_CACHE_DIR") {
            sources.push(("cache-dir", "environment PROJECTCLONE_CACHE_DIR".to_string()));
            open = open.cache_dir(d);
        } else if let Some(s) = files.get(|l| l.cache_dir.as_ref()) {
            sources.push(("cache-dir", s.source.to_string()));
            open = open.cache_dir(expanded(&s)?);
        }
        if let Some(s) = files.get(|l| l.append_only.as_ref()) {
            sources.push(("append-only", s.source.to_string()));
            open = open.append_only(s.value);
        }
        fn take<T>(sources: &mut Vec<(&'static str, String)>, key: &'static str, s: Option<Setting<T>>) -> Option<T> {
            s.map(|s| {
                sources.push((key, s.source.to_string()));
                s.value
            })
        }
        let excludes = take(&mut sources, "exclude", files.get(|l| l.exclude.as_ref())).unwrap_or_default();
        let exclude_caches =
            take(&mut sources, "exclude-caches", files.get(|l| l.exclude_caches.as_ref())).unwrap_or(false);
        let one_file_system = take(
            &mut sources,
            "one-file-system",
            files.get(|l| l.one_file_system.as_ref()),
        )
        .unwrap_or(false);
        let tags = take(&mut sources, "tags", files.get(|l| l.tags.as_ref())).unwrap_or_default();
        let host = take(&mut sources, "host", files.get(|l| l.host.as_ref()));
        let exclude_larger_than = match take(
            &mut sources,
            "exclude-larger-than",
            files.get(|l| l.exclude_larger_than.as_ref()),
        ) {
            // Checked when the file was read.
            Some(v) => Some(crate::backup::parse_size(&v).map_err(Error::Invalid)?),
            None => None,
        };
        Ok(Settings {
            location,
            credentials,
            open,
            excludes,
            exclude_caches,
            one_file_system,
            exclude_larger_than,
            tags,
            host,
            sources,
        })
    }

    /// The repository location: `PROJECTCLONE_REPO`, `repo` of the files, or the default
    /// `$XDG_DATA_HOME/projectclone/repo`.
    ///
    /// See the example of [`Settings`].
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Where the password comes from; an error of kind
    /// [`WrongPassword`](crate::ErrorKind::WrongPassword) when no variable and no file
    /// names one.
    ///
    /// See the example of [`Settings`].
    pub fn credentials(&self) -> Result<Credentials> {
        self.credentials.clone().ok_or_else(|| {
            Error::PasswordRequired(
                "the repository (no PROJECTCLONE_PASSWORD_FILE, PROJECTCLONE_PASSWORD or \
                 PROJECTCLONE_PASSWORD_COMMAND is set, and no config file sets password-file or \
                 password-command)"
                    .into(),
            )
        })
    }

    /// How to open the repository: the cache folder and `append-only`.
    ///
    /// ```
    /// # let tmp = tempfile::tempdir()?;
    /// let s = projectclone::Settings::load(Some(tmp.path()), None)?;
    /// let options = s.open_options();
    /// # let _ = options;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_options(&self) -> OpenOptions {
        self.open.clone()
    }

    /// The `exclude` patterns of the files.
    ///
    /// See the example of [`Settings`].
    pub fn excludes(&self) -> &[String] {
        &self.excludes
    }

    /// The `tags` of the files.
    ///
    /// See the example of [`Settings`].
    pub fn tags(&self) -> &[String] {
        &self.tags
    }

    /// The `host` of the files: the host name to record instead of this machine's.
    ///
    /// See the example of [`Settings`].
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// `exclude-caches`, `one-file-system` and `exclude-larger-than` of the files.
    ///
    /// See the example of [`Settings`].
    pub fn backup_rules(&self) -> (bool, bool, Option<u64>) {
        (self.exclude_caches, self.one_file_system, self.exclude_larger_than)
    }

    /// A backup of `paths` with the files' backup settings: `exclude`, `exclude-caches`,
    /// `one-file-system`, `exclude-larger-than`, `tags` and `host`.
    ///
    /// ```
    /// # let tmp = tempfile::tempdir()?;
    /// let s = projectclone::Settings::load(Some(tmp.path()), None)?;
    /// let backup = s.backup_options([tmp.path()]).note("nightly");
    /// # let _ = backup;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn backup_options<P: AsRef<Path>>(&self, paths: impl IntoIterator<Item = P>) -> BackupOptions {
        let mut o = BackupOptions::new(paths)
            .exclude_caches(self.exclude_caches)
            .one_file_system(self.one_file_system);
        for e in &self.excludes {
            o = o.exclude(e.clone());
        }
        for t in &self.tags {
            o = o.tag(t.clone());
        }
        if let Some(h) = &self.host {
            o = o.hostname(h.clone());
        }
        if let Some(n) = self.exclude_larger_than {
            o = o.exclude_larger_than(n);
        }
        o
    }

    /// Where each setting came from, as `(key, source)`: `environment PROJECTCLONE_REPO`,
    /// `project file /srv/app/.projectclone.toml line 3`, `default`, …
    ///
    /// See the example of [`Settings`].
    pub fn sources(&self) -> &[(&'static str, String)] {
        &self.sources
    }

    /// Open the repository with these settings.
    ///
    /// See the example of [`Settings`].
    pub fn open(&self) -> Result<Repository> {
        Repository::open(&self.location, &self.credentials()?, &self.open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// An environment of these variables only.
    fn env_of(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<OsString> {
        move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| OsString::from(v))
    }

    #[test]
    fn layers_in_the_programs_order() {
        let tmp = tempfile::tempdir().unwrap();
        let user = write(
            tmp.path(),
            "config.toml",
            "repo = \"/srv/user-repo\"\npassword-command = \"echo from-user\"\ncache-dir = \"/var/cache/pc\"\n\
             exclude = [\"*.log\"]\nhost = \"laptop\"\n\
             [profile.work]\nrepo = \"/srv/work-repo\"\nexclude-larger-than = \"1M\"\n",
        );
        let proj = tmp.path().join("app");
        write(
            &proj,
            ".projectclone.toml",
            "exclude = [\"target/\"]\nappend-only = true\ntags = [\"app\"]\n",
        );

        let files = Files::load(Some(&user), None, Some(&proj), None, true).unwrap();
        let s = Settings::from_files(&files, &env_of(&[])).unwrap();
        assert_eq!(s.location(), "/srv/user-repo");
        assert!(matches!(s.credentials().unwrap(), Credentials::PasswordCommand(c) if c == "echo from-user"));
        assert_eq!(s.excludes(), ["target/"], "the project file is above the user file");
        assert_eq!(s.host.as_deref(), Some("laptop"));
        assert_eq!(s.exclude_larger_than, None);
        assert!(s.open.append_only_set());
        assert!(
            s.sources()
                .contains(&("repo", format!("user file {}:1", user.display())))
        );

        let files = Files::load(Some(&user), Some("work"), Some(&proj), None, true).unwrap();
        let s = Settings::from_files(&files, &env_of(&[])).unwrap();
        assert_eq!(s.location(), "/srv/work-repo", "the profile is above the top level");
        assert_eq!(s.exclude_larger_than, Some(1 << 20));

        // The environment is above every file.
        let env = env_of(&[
            ("PROJECTCLONE_REPO", "s3:bucket/x"),
            ("PROJECTCLONE_PASSWORD", "pw"),
            ("PROJECTCLONE_CACHE_DIR", "/tmp/c"),
        ]);
        let s = Settings::from_files(&files, &env).unwrap();
        assert_eq!(s.location(), "s3:bucket/x");
        assert!(matches!(s.credentials().unwrap(), Credentials::Password(p) if &p[..] == b"pw"));
        assert!(
            s.sources()
                .contains(&("cache-dir", "environment PROJECTCLONE_CACHE_DIR".into()))
        );
    }

    #[test]
    fn no_password_anywhere_and_untrusted_project_files() {
        let tmp = tempfile::tempdir().unwrap();
        let files = Files::load(None, None, Some(tmp.path()), None, true).unwrap();
        let s = Settings::from_files(&files, &env_of(&[])).unwrap();
        let e = s.credentials().unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::WrongPassword);
        assert!(e.to_string().contains("password-file"), "{e}");
        assert!(s.location().ends_with("projectclone/repo"), "{}", s.location());

        // A project file that came with the tree may not choose where the data goes.
        let proj = tmp.path().join("clone");
        write(&proj, ".projectclone.toml", "repo = \"sftp:evil.example:/x\"\n");
        let trusted = TrustedDirs::new(&tmp.path().join("state"));
        let e = Files::load(None, None, Some(&proj), Some(&trusted), true).unwrap_err();
        assert!(e.to_string().contains("config trust"), "{e}");
        trusted.set(&proj, true).unwrap();
        let files = Files::load(None, None, Some(&proj), Some(&trusted), true).unwrap();
        assert_eq!(
            Settings::from_files(&files, &env_of(&[])).unwrap().location(),
            "sftp:evil.example:/x"
        );
    }
}
