//! Repository locations: the one place a location string is parsed, and where each kind
//! of location becomes a backend. Nothing else in the crate knows which store it talks to.
//!
//! ```text
//! /abs/or/relative/path                      a local folder (also file:PATH, file://PATH)
//! s3:http(s)://HOST[:PORT]/BUCKET[/PREFIX]   an S3-compatible store at that endpoint
//! s3://BUCKET[/PREFIX]                        AWS S3 (or the endpoint in AWS_ENDPOINT_URL)
//! sftp://[USER@]HOST[:PORT]/ABS/PATH          SFTP through the system ssh client
//! rclone:REMOTE:PATH                          any rclone remote, through `rclone serve sftp`
//! ```
//!
//! A string that looks like a remote location but names no supported kind (`gdrive:x`,
//! `user@host:/x`, `http://…`) is an error that says what to write instead, never a local
//! folder of that name.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::backend::local::LocalBackend;
use crate::backend::plugin::{self, PluginBackend};
use crate::backend::retry::{RetryOptions, Retrying, Stats};
use crate::backend::s3::{S3Backend, S3Target};
use crate::backend::sftp::{SftpBackend, SftpTarget};
use crate::backend::{Backend, DEFAULT_TIMEOUT};
use crate::error::{Error, Result};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    S3(S3Target),
    Sftp(SftpTarget),
    /// `NAME:ARG` served by the program `projectclone-backend-NAME` on `PATH`
    /// ([`PluginBackend`], format-spec §19 "Plugin stores").
    Plugin {
        name: String,
        arg: String,
    },
}

/// How a location's store is reached (beyond the location itself).
#[derive(Clone, Debug, Default)]
pub struct StorageOptions {
    /// Bytes per second sent at most.
    pub limit_upload: Option<u64>,
    /// Bytes per second received at most.
    pub limit_download: Option<u64>,
    /// S3 storage class for new objects.
    pub storage_class: Option<String>,
    /// Endpoint for `s3://` locations (the `AWS_ENDPOINT_URL` of the environment).
    pub aws_endpoint: Option<String>,
    /// The ssh program and arguments placed before the host, for `sftp://` locations
    /// (`PROJECTCLONE_SSH_COMMAND`); empty: `ssh`.
    pub ssh_command: Vec<String>,
    /// How long a request may wait for the store without progress before it is abandoned
    /// and tried again (`None`: [`DEFAULT_TIMEOUT`]).
    pub timeout: Option<Duration>,
    /// Bytes per second below which an S3 upload counts as stalled (`None`:
    /// [`MIN_UPLOAD_RATE`](crate::backend::s3::MIN_UPLOAD_RATE)).
    pub min_upload_rate: Option<u64>,
    /// Tries per request, the first included (`None`: [`RetryOptions`]' default).
    pub tries: Option<usize>,
    /// The first wait before a request is tried again; it doubles with each try
    /// (`None`: [`RetryOptions`]' default).
    pub retry_delay: Option<Duration>,
}

fn bad(s: &str, why: &str) -> Error {
    Error::BadLocation(format!("repository location {s:?}: {why}"))
}

const KINDS: &str = "a folder path, s3:http(s)://HOST/BUCKET[/PREFIX], s3://BUCKET[/PREFIX], \
                     sftp://[USER@]HOST[:PORT]/PATH or rclone:REMOTE:PATH";

impl Location {
    /// Parse a location as users write it.
    pub fn parse(s: &str) -> Result<Location> {
        if s.is_empty() {
            return Err(bad(s, "empty"));
        }
        if let Some(rest) = s.strip_prefix("file://").or_else(|| s.strip_prefix("file:")) {
            if rest.is_empty() {
                return Err(bad(s, "no path after file:"));
            }
            return Ok(Location::Local(PathBuf::from(rest)));
        }
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = split_bucket(s, rest)?;
            return Ok(Location::S3(S3Target {
                endpoint: None,
                bucket,
                prefix,
                storage_class: None,
            }));
        }
        if let Some(rest) = s.strip_prefix("s3:") {
            let (scheme, after) = rest
                .split_once("://")
                .ok_or_else(|| bad(s, "write s3:http://HOST[:PORT]/BUCKET[/PREFIX] or s3://BUCKET[/PREFIX]"))?;
            if scheme != "http" && scheme != "https" {
                return Err(bad(s, "the endpoint must be http:// or https://"));
            }
            let (host, path) = after
                .split_once('/')
                .ok_or_else(|| bad(s, "no bucket after the endpoint (s3:http://HOST/BUCKET)"))?;
            if host.is_empty() {
                return Err(bad(s, "no host in the endpoint"));
            }
            if host.contains('@') {
                return Err(bad(
                    s,
                    "credentials do not belong in the location: use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
                ));
            }
            let (bucket, prefix) = split_bucket(s, path)?;
            return Ok(Location::S3(S3Target {
                endpoint: Some(format!("{scheme}://{host}")),
                bucket,
                prefix,
                storage_class: None,
            }));
        }
        if let Some(rest) = s.strip_prefix("sftp://") {
            let (authority, path) = rest
                .split_once('/')
                .ok_or_else(|| bad(s, "no path (sftp://[USER@]HOST[:PORT]/ABS/PATH)"))?;
            let path = format!("/{}", path.trim_end_matches('/'));
            if path == "/" {
                return Err(bad(s, "give the repository's folder, not the server's root"));
            }
            let (user, hostport) = match authority.rsplit_once('@') {
                Some((u, h)) if !u.is_empty() => (Some(u.to_string()), h),
                Some(_) => return Err(bad(s, "empty user name before @")),
                None => (None, authority),
            };
            if user.as_deref().is_some_and(|u| u.contains(':')) {
                return Err(bad(
                    s,
                    "passwords do not belong in the location: use ssh keys or the ssh agent",
                ));
            }
            let (host, port) = match hostport.rsplit_once(':') {
                Some((h, p)) if !hostport.starts_with('[') => {
                    let p: u16 = p.parse().map_err(|_| bad(s, &format!("port {p:?} is not a number")))?;
                    (h.to_string(), Some(p))
                }
                _ => (hostport.to_string(), None),
            };
            if host.is_empty() || host.starts_with('-') {
                return Err(bad(s, "no host name"));
            }
            return Ok(Location::Sftp(SftpTarget::Ssh { user, host, port, path }));
        }
        if let Some(rest) = s.strip_prefix("rclone:") {
            let (remote, path) = rest.split_once(':').ok_or_else(|| {
                bad(
                    s,
                    "write rclone:REMOTE:PATH (the remote's name as in `rclone listremotes`)",
                )
            })?;
            if remote.is_empty() || remote.starts_with('-') {
                return Err(bad(s, "no remote name before the second colon"));
            }
            return Ok(Location::Sftp(SftpTarget::Rclone {
                remote: remote.to_string(),
                path: path.trim_end_matches('/').to_string(),
            }));
        }
        if let Some((scheme, _)) = s.split_once("://") {
            return Err(bad(
                s,
                &format!("{scheme}:// is not a kind of location this build knows; use {KINDS}"),
            ));
        }
        // Plain paths are local. A name with a colon before any slash is how other tools
        // write remotes (`gdrive:backups`, `user@host:/srv/x`): never a folder of that name.
        let head = s.split('/').next().unwrap_or("");
        if let Some((name, tail)) = head.split_once(':')
            && !s.starts_with('/')
            && !s.starts_with('.')
            && !s.starts_with('~')
        {
            if plugin::valid_name(name) && plugin::find(name).is_some() {
                return Ok(Location::Plugin {
                    name: name.to_string(),
                    arg: s[name.len() + 1..].to_string(),
                });
            }
            let hint = if let Some((user, host)) = name.split_once('@') {
                format!(
                    "it looks like scp's user@host:path; for SFTP write sftp://{user}@{host}/{}",
                    s.split_once(':').map(|x| x.1).unwrap_or(tail).trim_start_matches('/')
                )
            } else {
                format!(
                    "it looks like a remote of another tool; for an rclone remote write rclone:{s}, for a \
                     local folder of that name write ./{s}; a plugin store needs the program \
                     {}{name} on PATH",
                    plugin::PROGRAM_PREFIX
                )
            };
            return Err(bad(s, &hint));
        }
        Ok(Location::Local(PathBuf::from(s)))
    }

    /// The location as users write it, without credentials.
    pub fn display(&self) -> String {
        match self {
            Location::Local(p) => p.display().to_string(),
            Location::S3(t) => t.display(),
            Location::Sftp(t) => t.display(),
            Location::Plugin { name, arg } => format!("{name}:{arg}"),
        }
    }

    /// The folder of a local repository.
    pub fn local_path(&self) -> Option<&Path> {
        match self {
            Location::Local(p) => Some(p),
            _ => None,
        }
    }

    /// The store, behind the retrying and counting layer, and that layer's counters.
    pub fn open(&self, opts: &StorageOptions) -> Result<(Arc<dyn Backend>, Arc<Stats>)> {
        let timeout = opts.timeout.unwrap_or(DEFAULT_TIMEOUT);
        let inner: Arc<dyn Backend> = match self {
            Location::Local(p) => Arc::new(LocalBackend::new(p)),
            Location::S3(t) => {
                let mut t = t.clone();
                if t.endpoint.is_none() {
                    t.endpoint = opts.aws_endpoint.clone();
                }
                if opts.storage_class.is_some() {
                    t.storage_class = opts.storage_class.clone();
                }
                let b = S3Backend::open_with(&t, timeout)?;
                Arc::new(match opts.min_upload_rate {
                    Some(r) => b.with_min_upload_rate(r),
                    None => b,
                })
            }
            Location::Sftp(t) => {
                Arc::new(SftpBackend::with_ssh(t.clone(), opts.ssh_command.clone()).with_timeout(timeout))
            }
            Location::Plugin { name, arg } => Arc::new(PluginBackend::open(name, arg)?),
        };
        let defaults = RetryOptions::default();
        let min_delay = opts.retry_delay.unwrap_or(defaults.min_delay);
        let layer = Retrying::new(
            inner,
            RetryOptions {
                attempts: opts.tries.unwrap_or(defaults.attempts).max(1),
                min_delay,
                max_delay: defaults.max_delay.max(min_delay),
                limit_upload: opts.limit_upload,
                limit_download: opts.limit_download,
            },
        );
        let stats = layer.stats();
        Ok((Arc::new(layer), stats))
    }
}

fn split_bucket(s: &str, rest: &str) -> Result<(String, String)> {
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(bad(s, "no bucket name"));
    }
    if bucket.contains('@') || bucket.contains(':') {
        return Err(bad(
            s,
            "the bucket name holds @ or : (credentials do not belong in the location)",
        ));
    }
    Ok((bucket.to_string(), prefix.trim_matches('/').to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_into_their_kinds() {
        let s3 = |endpoint: Option<&str>, bucket: &str, prefix: &str| {
            Location::S3(S3Target {
                endpoint: endpoint.map(String::from),
                bucket: bucket.into(),
                prefix: prefix.into(),
                storage_class: None,
            })
        };
        for (text, want) in [
            ("/srv/repo", Location::Local("/srv/repo".into())),
            ("repo", Location::Local("repo".into())),
            ("./gdrive:x", Location::Local("./gdrive:x".into())),
            ("file:/srv/r", Location::Local("/srv/r".into())),
            ("file:///srv/r", Location::Local("/srv/r".into())),
            (
                "s3:http://127.0.0.1:9000/bucket",
                s3(Some("http://127.0.0.1:9000"), "bucket", ""),
            ),
            (
                "s3:https://s3.example.com/b/a/b/",
                s3(Some("https://s3.example.com"), "b", "a/b"),
            ),
            ("s3://bucket/prefix", s3(None, "bucket", "prefix")),
            (
                "sftp://backup@nas:2222/srv/backups/app",
                Location::Sftp(SftpTarget::Ssh {
                    user: Some("backup".into()),
                    host: "nas".into(),
                    port: Some(2222),
                    path: "/srv/backups/app".into(),
                }),
            ),
            (
                "sftp://nas/srv/x/",
                Location::Sftp(SftpTarget::Ssh {
                    user: None,
                    host: "nas".into(),
                    port: None,
                    path: "/srv/x".into(),
                }),
            ),
            (
                "rclone:gdrive:backups/app",
                Location::Sftp(SftpTarget::Rclone {
                    remote: "gdrive".into(),
                    path: "backups/app".into(),
                }),
            ),
        ] {
            assert_eq!(Location::parse(text).unwrap(), want, "{text}");
        }
    }

    #[test]
    fn remote_looking_strings_are_errors_never_local_folders() {
        for (text, hint) in [
            ("gdrive:backups", "rclone:gdrive:backups"),
            ("user@host:/srv/x", "sftp://user@host/srv/x"),
            ("http://example.com/x", "http://"),
            ("s3:ftp://h/b", "http"),
            ("s3://", "bucket"),
            ("sftp://host", "path"),
            ("sftp://host/", "root"),
            ("sftp://u:pw@host/x", "passwords"),
            ("s3:http://key:secret@h/b", "credentials"),
            ("rclone:nocolon", "REMOTE"),
            ("", "empty"),
        ] {
            let e = Location::parse(text).unwrap_err().to_string();
            assert!(e.contains(hint), "{text}: {e}");
        }
    }

    #[test]
    fn displayed_locations_read_back_the_same() {
        for text in [
            "s3:http://127.0.0.1:9000/bucket/pre/fix",
            "s3://bucket",
            "sftp://u@h:22/a/b",
            "rclone:r:p/q",
        ] {
            let l = Location::parse(text).unwrap();
            assert_eq!(Location::parse(&l.display()).unwrap(), l, "{text}");
        }
    }
}
