//! S3-compatible stores (AWS, MinIO, Ceph, rclone's `serve s3`, moto…) through OpenDAL,
//! blocking on the shared runtime. Objects live at `PREFIX/<path>` in the bucket, exactly
//! the layout of a local repository; no directory markers are ever written.
//!
//! Credentials and region come from the standard variables (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`/`AWS_DEFAULT_REGION`,
//! `AWS_PROFILE` and its files), which OpenDAL's S3 service loads itself; they are never
//! part of the location, never stored and never printed.

use std::time::Duration;

use opendal::{ErrorKind, blocking, options};

use super::runtime::runtime;
use super::{Backend, CreateIfAbsent, DEFAULT_TIMEOUT, Dir, ObjectInfo, Written};
use crate::error::{Error, Result, StorageKind};

/// Where an S3 repository lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Target {
    /// `http(s)://host[:port]`; `None`: AWS (or `AWS_ENDPOINT_URL`, which OpenDAL reads).
    pub endpoint: Option<String>,
    pub bucket: String,
    /// Folder inside the bucket, without leading or trailing slashes (may be empty).
    pub prefix: String,
    /// A storage class for new objects (`STANDARD_IA`, `GLACIER_IR`…).
    pub storage_class: Option<String>,
}

impl S3Target {
    /// The location as users write it, without credentials.
    pub fn display(&self) -> String {
        let tail = if self.prefix.is_empty() {
            self.bucket.clone()
        } else {
            format!("{}/{}", self.bucket, self.prefix)
        };
        match &self.endpoint {
            Some(e) => format!("s3:{}/{tail}", e.trim_end_matches('/')),
            None => format!("s3://{tail}"),
        }
    }
}

/// Credentials given by the caller instead of the environment (a program that reaches
/// several stores at once, such as the tests); the binary never uses them.
#[derive(Clone)]
pub struct S3Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

pub struct S3Backend {
    op: blocking::Operator,
    /// For PUTs: the same store without OpenDAL's timeouts, which would time a whole upload
    /// as one step; [`S3Backend::write_new`] gives each its own ([`upload_timeout`]).
    put: opendal::Operator,
    timeout: Duration,
    min_upload_rate: u64,
    target: S3Target,
}

/// The slowest upload rate that is still progress, in bytes per second, by default: an
/// upload may take the timeout plus its size at this rate (16 MiB: 60 s + 256 s), so a slow
/// uplink still stores packs, while a stalled one is abandoned within minutes and tried
/// again. (A PUT's progress cannot be watched: its body is handed to the HTTP client whole.)
pub const MIN_UPLOAD_RATE: u64 = 64 * 1024;

/// How long a PUT of `len` bytes may take, for a store timeout of `timeout`.
fn upload_timeout(timeout: Duration, len: usize, min_rate: u64) -> Duration {
    timeout + Duration::from_secs_f64(len as f64 / min_rate.max(1) as f64)
}

/// Parallel requests at most (uploads and reads together).
const CONNECTIONS: usize = 16;

impl S3Backend {
    pub fn open(target: &S3Target) -> Result<S3Backend> {
        Self::open_with(target, DEFAULT_TIMEOUT)
    }

    /// [`open`](Self::open) with requests abandoned (and so tried again above) after
    /// `timeout` without progress.
    pub fn open_with(target: &S3Target, timeout: Duration) -> Result<S3Backend> {
        Self::open_inner(target, timeout, None)
    }

    /// [`open`](Self::open) with these credentials and no others, in region us-east-1:
    /// the environment, the AWS profile files and instance metadata are not consulted.
    pub fn open_with_credentials(target: &S3Target, creds: &S3Credentials) -> Result<S3Backend> {
        Self::open_inner(target, DEFAULT_TIMEOUT, Some(creds))
    }

    fn open_inner(target: &S3Target, timeout: Duration, creds: Option<&S3Credentials>) -> Result<S3Backend> {
        opendal::install_default();
        let mut cfg = vec![
            ("bucket".to_string(), target.bucket.clone()),
            ("root".to_string(), format!("/{}", target.prefix)),
        ];
        if let Some(c) = creds {
            cfg.push(("access_key_id".into(), c.access_key_id.clone()));
            cfg.push(("secret_access_key".into(), c.secret_access_key.clone()));
            cfg.push(("disable_config_load".into(), "true".into()));
            cfg.push(("disable_ec2_metadata".into(), "true".into()));
        }
        if let Some(e) = &target.endpoint {
            cfg.push(("endpoint".into(), e.clone()));
        }
        // Without a region OpenDAL asks the endpoint, which S3-compatible servers often do
        // not answer; us-east-1 is what they expect then. (With credentials given, OpenDAL
        // reads no variable, so not the region either.)
        if creds.is_some()
            || (std::env::var_os("AWS_REGION").is_none() && std::env::var_os("AWS_DEFAULT_REGION").is_none())
        {
            let region = creds
                .is_none()
                .then(profile_region)
                .flatten()
                .unwrap_or_else(|| "us-east-1".into());
            cfg.push(("region".into(), region));
        }
        if let Some(c) = &target.storage_class {
            cfg.push(("default_storage_class".into(), c.clone()));
        }
        let location = target.display();
        let base = opendal::Operator::via_iter("s3", cfg)
            .map_err(|e| map_err(e, &location))?
            .layer(opendal::layers::ConcurrentLimitLayer::new(CONNECTIONS));
        // OpenDAL times each transfer step (a body's read or write, a listing's page)
        // with the io timeout, and requests without a body (stat, which `exists` and
        // `size` use) with the other: both are "no answer for this long", so a stalled
        // HEAD is abandoned and tried again as soon as a stalled GET. A PUT's body is one
        // step, so PUTs go through `put`, timed by `write_new` instead.
        let op = base.clone().layer(
            opendal::layers::TimeoutLayer::new()
                .with_timeout(timeout)
                .with_io_timeout(timeout),
        );
        let _enter = runtime().enter();
        let op = blocking::Operator::new(op).map_err(|e| map_err(e, &location))?;
        Ok(S3Backend {
            op,
            put: base,
            timeout,
            min_upload_rate: MIN_UPLOAD_RATE,
            target: target.clone(),
        })
    }

    /// Uploads slower than `rate` bytes per second (beyond the timeout) are abandoned and
    /// tried again; [`MIN_UPLOAD_RATE`] by default.
    pub fn with_min_upload_rate(mut self, rate: u64) -> S3Backend {
        self.min_upload_rate = rate.max(1);
        self
    }

    fn at(&self, path: &str) -> String {
        format!("{}/{path}", self.target.display())
    }

    /// The error for a range that holds `got` bytes where `len` were asked for.
    fn short(&self, path: &str, offset: u64, len: usize, got: u64) -> Error {
        Error::corrupt(format!(
            "{}: {got} bytes at offset {offset} where {len} were expected: shorter than expected (truncated?)",
            self.at(path)
        ))
    }
}

/// The region of the AWS profile in use (`AWS_PROFILE`, else `default`) in the AWS config
/// file (`AWS_CONFIG_FILE`, else `~/.aws/config`), as the AWS tools read it.
fn profile_region() -> Option<String> {
    let file = std::env::var_os("AWS_CONFIG_FILE")
        .map(std::path::PathBuf::from)
        .or_else(|| directories::BaseDirs::new().map(|d| d.home_dir().join(".aws").join("config")))?;
    let text = std::fs::read_to_string(file).ok()?;
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
    region_in(&text, &profile)
}

/// `region` of `[profile NAME]` (or `[default]` for `default`) in an AWS config file's text.
fn region_in(text: &str, profile: &str) -> Option<String> {
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim();
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let section = section.trim();
            inside = section.strip_prefix("profile").map(str::trim) == Some(profile)
                || (profile == "default" && section == "default");
        } else if inside
            && let Some((k, v)) = line.split_once('=')
            && k.trim() == "region"
        {
            let v = v.split('#').next().unwrap_or("").trim();
            return (!v.is_empty()).then(|| v.to_string());
        }
    }
    None
}

/// The HTTP status of the answer an OpenDAL error quotes (its `response` context,
/// `Parts { status: 400, … }`), if it quotes one.
fn http_status(text: &str) -> Option<u16> {
    let at = text.find("Parts { status: ")? + "Parts { status: ".len();
    text.get(at..at + 3)?.parse().ok()
}

/// An OpenDAL error as a storage error: what the caller can do about it.
fn map_err(e: opendal::Error, location: &str) -> Error {
    let text = e.to_string();
    if text.contains("reqsign::Sign") {
        // No request left: trying again cannot help.
        return Error::Storage {
            kind: StorageKind::Permanent,
            location: location.to_string(),
            message: format!(
                "no usable S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and \
                 AWS_SESSION_TOKEN for temporary ones), or AWS_PROFILE for ~/.aws/credentials ({text})"
            ),
        };
    }
    let kind = match e.kind() {
        ErrorKind::NotFound => StorageKind::NotFound,
        ErrorKind::RateLimited => StorageKind::Transient,
        _ if e.is_temporary() => StorageKind::Transient,
        // The server answered and refused the request itself (400 Bad Request, 405, 411,
        // 416…; not 408 Request Timeout): the same request gets the same answer.
        ErrorKind::Unexpected if http_status(&text).is_some_and(|s| (400..500).contains(&s) && s != 408) => {
            StorageKind::Permanent
        }
        // A connection that failed or was cut, a server answering 5xx: OpenDAL marks most
        // as temporary; what it leaves "unexpected" (a body cut short) is worth another try.
        ErrorKind::Unexpected => StorageKind::Transient,
        _ => StorageKind::Permanent,
    };
    Error::Storage {
        kind,
        location: location.to_string(),
        message: text,
    }
}

impl Backend for S3Backend {
    fn location(&self) -> String {
        self.target.display()
    }

    fn list(&self, dir: Dir) -> Result<Vec<(String, u64)>> {
        Ok(self.list_info(dir)?.into_iter().map(|o| (o.name, o.size)).collect())
    }

    fn list_info(&self, dir: Dir) -> Result<Vec<ObjectInfo>> {
        let prefix = format!("{}/", dir.name());
        let entries = self
            .op
            .list_options(
                &prefix,
                options::ListOptions {
                    recursive: true,
                    ..Default::default()
                },
            )
            .or_else(|e| {
                if e.kind() == ErrorKind::NotFound {
                    Ok(Vec::new())
                } else {
                    Err(map_err(e, &self.at(&prefix)))
                }
            })?;
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            let md = e.metadata();
            if md.is_dir() {
                continue;
            }
            let name = e.path().rsplit('/').next().unwrap_or_default().to_string();
            if name.is_empty() || name.starts_with('.') {
                continue;
            }
            out.push(ObjectInfo {
                name,
                size: md.content_length(),
                modified_ns: md
                    .last_modified()
                    .and_then(|t| {
                        std::time::SystemTime::from(t)
                            .duration_since(std::time::UNIX_EPOCH)
                            .ok()
                    })
                    .map(|d| d.as_nanos() as i64),
            });
        }
        Ok(out)
    }

    fn read(&self, path: &str) -> Result<Vec<u8>> {
        self.op
            .read(path)
            .map(|b| b.to_vec())
            .map_err(|e| map_err(e, &self.at(path)))
    }

    fn read_range(&self, path: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        let b = self
            .op
            .read_options(
                path,
                options::ReadOptions {
                    range: (offset..offset + len as u64).into(),
                    ..Default::default()
                },
            )
            .map_err(|e| {
                // A range past the end is refused by the server (416) or by OpenDAL's own
                // length check ("reader got too little data", kind Unexpected, which would
                // be tried again for minutes): the object is shorter than its reader
                // expects, which is damage, not a hiccup.
                if e.kind() != ErrorKind::NotFound
                    && let Ok(size) = self.size(path)
                    && size < offset.saturating_add(len as u64)
                {
                    return self.short(path, offset, len, size.saturating_sub(offset));
                }
                map_err(e, &self.at(path))
            })?;
        if b.len() != len {
            return Err(self.short(path, offset, len, b.len() as u64));
        }
        Ok(b.to_vec())
    }

    fn size(&self, path: &str) -> Result<u64> {
        self.op
            .stat(path)
            .map(|m| m.content_length())
            .map_err(|e| map_err(e, &self.at(path)))
    }

    fn write_new(&self, path: &str, bytes: &[u8]) -> Result<Written> {
        // A PUT is atomic: an object is there whole or not at all. `If-None-Match: *` makes
        // it conditional where the store supports it; `config` and key files are also
        // looked for first, since a store that ignores the condition would replace them.
        // Every other name is the hash of its content or random, so a replaced object holds
        // the same plaintext.
        if (path == "config" || path.starts_with("keys/")) && self.exists(path)? {
            return Ok(Written::AlreadyThere);
        }
        let limit = upload_timeout(self.timeout, bytes.len(), self.min_upload_rate);
        let put = self.put.write_options(
            path,
            bytes.to_vec(),
            options::WriteOptions {
                if_not_exists: true,
                ..Default::default()
            },
        );
        let Ok(res) = runtime().block_on(async { tokio::time::timeout(limit, put).await }) else {
            return Err(Error::Storage {
                kind: StorageKind::Transient,
                location: self.at(path),
                message: format!(
                    "upload of {} bytes not finished within {} s (PROJECTCLONE_STORAGE_TIMEOUT plus the size at \
                     PROJECTCLONE_STORAGE_MIN_RATE, {} KiB/s)",
                    bytes.len(),
                    limit.as_secs(),
                    self.min_upload_rate / 1024
                ),
            });
        };
        match res {
            Ok(_) => Ok(Written::New),
            Err(e) if matches!(e.kind(), ErrorKind::ConditionNotMatch | ErrorKind::AlreadyExists) => {
                Ok(Written::AlreadyThere)
            }
            Err(e) => Err(map_err(e, &self.at(path))),
        }
    }

    fn create_if_absent(&self) -> CreateIfAbsent {
        CreateIfAbsent::Requested
    }

    fn delete(&self, path: &str) -> Result<()> {
        match self.op.delete(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(map_err(e, &self.at(path))),
        }
    }

    fn exists(&self, path: &str) -> Result<bool> {
        self.op.exists(path).map_err(|e| map_err(e, &self.at(path)))
    }

    fn create(&self) -> Result<()> {
        // A missing bucket is created (where the credentials allow it), and the place must
        // be empty: a new repository never mixes with other objects.
        let list_first = || {
            self.op.list_options(
                "",
                options::ListOptions {
                    recursive: true,
                    limit: Some(1),
                    ..Default::default()
                },
            )
        };
        let first = match list_first() {
            Ok(f) => f,
            Err(e) if matches!(e.kind(), ErrorKind::ConfigInvalid | ErrorKind::NotFound) => {
                super::s3_bucket::create_bucket(&self.target)?;
                list_first().map_err(|e| map_err(e, &self.target.display()))?
            }
            Err(e) => return Err(map_err(e, &self.target.display())),
        };
        if let Some(e) = first.iter().find(|e| !e.metadata().is_dir() || e.path() != "/") {
            return Err(Error::Invalid(format!(
                "{} is not empty (it holds {}): a new repository needs an empty place; choose another \
                 bucket or prefix",
                self.target.display(),
                e.path()
            )));
        }
        Ok(())
    }

    fn remote(&self) -> bool {
        true
    }

    fn connections(&self) -> usize {
        CONNECTIONS / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profiles_region_is_read_from_the_aws_config_file() {
        let text = "[default]\nregion = eu-west-1\n\n[profile work]\noutput=json\nregion=ap-south-2 # Hyderabad\n\
                    [profile empty]\nregion =\n[sso-session x]\nregion = us-west-2\n";
        assert_eq!(region_in(text, "default").as_deref(), Some("eu-west-1"));
        assert_eq!(region_in(text, "work").as_deref(), Some("ap-south-2"));
        assert_eq!(region_in(text, "empty"), None);
        assert_eq!(region_in(text, "missing"), None);
        assert_eq!(region_in(text, "x"), None, "an sso-session is not a profile");
    }

    #[test]
    fn the_http_status_is_read_from_opendal_errors() {
        let t = "Unexpected (permanent) at stat, context: { service_operation: HeadObject, response: Parts { \
                 status: 416, version: HTTP/1.1 } }";
        assert_eq!(http_status(t), Some(416));
        assert_eq!(
            http_status("Unexpected (temporary) at read, context: { }: connection reset"),
            None
        );
    }
}
