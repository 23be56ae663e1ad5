//! DESIGN §7: `init` creates a missing bucket when the credentials allow it, on moto and on
//! `rclone serve s3`; missing credentials fail at once with a message that says which
//! variables to set.

use crate::servers::*;
use crate::util::*;

fn init_at(env: &Env, s: &dyn S3Server, url: &str) -> Out {
    let mut c = env.cmd_at(std::path::Path::new(url));
    for (k, v) in s.envs() {
        c.env(k, v);
    }
    run(c.args(["init", "--kdf-memory", "1024", "--kdf-time", "1", "--weak-kdf"]))
}

fn creates_missing_buckets(env: &Env, s: &dyn S3Server) {
    let url = s3_url(s.addr(), "made-by-init", "repo");
    init_at(env, s, &url).success();
    assert!(s.api().list("made-by-init", "repo/").contains_key("repo/config"));
    // A second repository in the same (now existing) bucket: no error about the bucket.
    init_at(env, s, &s3_url(s.addr(), "made-by-init", "other")).success();
    // A repository where one exists: refused, as locally.
    let out = init_at(env, s, &url).failure();
    assert!(
        out.stderr.contains("exists") || out.stderr.contains("not empty"),
        "{}",
        out.stderr
    );
}

#[test]
fn init_creates_a_missing_bucket() {
    let env = Env::new();
    let moto = Moto::start(&env);
    creates_missing_buckets(&env, &moto);
    let rclone = RcloneS3::start(&env);
    creates_missing_buckets(&env, &rclone);
}

#[test]
fn missing_s3_credentials_fail_at_once_and_say_what_to_set() {
    let env = Env::new();
    let moto = Moto::start(&env);
    let out = run(env
        .cmd_at(std::path::Path::new(&moto.url("nocreds")))
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .args(["init", "--kdf-memory", "1024", "--kdf-time", "1", "--weak-kdf"]))
    .failure();
    assert!(out.stderr.contains("AWS_ACCESS_KEY_ID"), "{}", out.stderr);
    assert!(
        !out.stderr.contains("trying again"),
        "no retries for missing credentials: {}",
        out.stderr
    );
}
