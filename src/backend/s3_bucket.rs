//! Creating a missing bucket for `init` (OpenDAL reads and writes objects, not buckets):
//! one `CreateBucket` request, signed with SigV4 from the same credential sources as
//! every other request (`reqsign`, which OpenDAL's S3 service uses itself).

use reqsign_aws_v4::{DefaultCredentialProvider, RequestSigner};
use reqsign_core::{Context, OsEnv, Signer};
use reqsign_file_read_tokio::TokioFileRead;

use super::runtime::runtime;
use super::s3::S3Target;
use crate::error::{Error, Result, StorageKind};

/// The region requests are signed for: `AWS_REGION`, `AWS_DEFAULT_REGION`, else us-east-1
/// (what S3-compatible servers expect when none is configured).
pub(crate) fn region() -> String {
    std::env::var("AWS_REGION")
        .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
        .ok()
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "us-east-1".into())
}

/// `https://ENDPOINT/BUCKET` (path style, which every S3-compatible server takes), or AWS's
/// regional endpoint when the location names none.
fn bucket_url(target: &S3Target, region: &str) -> String {
    let endpoint = target
        .endpoint
        .clone()
        .or_else(|| std::env::var("AWS_ENDPOINT_URL_S3").ok().filter(|e| !e.is_empty()))
        .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok().filter(|e| !e.is_empty()))
        .unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));
    format!("{}/{}", endpoint.trim_end_matches('/'), target.bucket)
}

/// Create the bucket of `target`. An existing bucket is fine (someone made it meanwhile);
/// a refusal says what to do.
pub(crate) fn create_bucket(target: &S3Target) -> Result<()> {
    let loc = target.display();
    let region = region();
    let url = bucket_url(target, &region);
    let body = if region == "us-east-1" {
        String::new()
    } else {
        format!(
            "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
             <LocationConstraint>{region}</LocationConstraint></CreateBucketConfiguration>"
        )
    };
    let storage = |kind, message: String| Error::Storage {
        kind,
        location: loc.clone(),
        message,
    };
    let (status, text) = runtime()
        .block_on(async {
            let ctx = Context::new().with_file_read(TokioFileRead).with_env(OsEnv);
            let signer = Signer::new(ctx, DefaultCredentialProvider::new(), RequestSigner::new("s3", &region));
            let mut parts = http::Request::put(&url)
                .header("x-amz-content-sha256", hex::encode(sha256(body.as_bytes())))
                .body(())
                .map_err(|e| format!("bad bucket URL {url}: {e}"))?
                .into_parts()
                .0;
            signer
                .sign(&mut parts, None)
                .await
                .map_err(|e| format!("cannot sign the request to create the bucket (credentials?): {e}"))?;
            let client = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(60))
                .build()
                .map_err(|e| e.to_string())?;
            let mut req = client.put(&url).body(body.clone());
            for (k, v) in parts.headers.iter() {
                req = req.header(k, v);
            }
            let resp = req.send().await.map_err(|e| format!("{e}"))?;
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            Ok::<_, String>((status, text))
        })
        .map_err(|m| storage(StorageKind::Transient, m))?;
    match status {
        200..=299 => Ok(()),
        409 if text.contains("BucketAlreadyOwnedByYou") => Ok(()),
        409 => Err(Error::Invalid(format!(
            "{loc}: bucket {} belongs to someone else (bucket names are global on AWS); choose another name",
            target.bucket
        ))),
        401 | 403 => Err(Error::Invalid(format!(
            "{loc}: bucket {} does not exist and these credentials may not create it ({status}); \
             create it first (for example `aws s3 mb s3://{}`), or use credentials allowed to",
            target.bucket, target.bucket
        ))),
        s => Err(storage(
            if s >= 500 {
                StorageKind::Transient
            } else {
                StorageKind::Permanent
            },
            format!(
                "creating bucket {} failed: HTTP {s}: {}",
                target.bucket,
                first_line(&text)
            ),
        )),
    }
}

fn first_line(s: &str) -> &str {
    let s = s.trim();
    &s[..s.find('\n').unwrap_or(s.len()).min(300)]
}

/// SHA-256 of the payload, which SigV4 signs.
fn sha256(b: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(b).into()
}
