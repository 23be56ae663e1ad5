//! S3 specifically (README "Remote repositories"): `init` creates a missing bucket when the credentials allow
//! it (moto and `rclone serve s3`); missing credentials fail at once with a message that says
//! which variables to set; and a repository is the same objects on S3 as on disk, so one
//! copied with `rclone copy` opens either way.

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

/// README "Remote repositories": a local repository copied byte for byte to S3 with `rclone copy` is a valid
/// remote repository, and back.
#[test]
fn a_repository_copied_with_rclone_opens_on_s3_and_back() {
    let env = Env::with_repo();
    let src = env.path("src");
    build_nasty(&src);
    let snap = env.backup([&src]);
    let moto = Moto::start(&env);
    let rclone = |args: &[&str]| {
        let mut c = std::process::Command::new(rclone_bin());
        c.env("RCLONE_CONFIG", "/dev/null")
            .env("RCLONE_CONFIG_MOTO_TYPE", "s3")
            .env("RCLONE_CONFIG_MOTO_PROVIDER", "Other")
            .env("RCLONE_CONFIG_MOTO_ENDPOINT", moto.endpoint())
            .env("RCLONE_CONFIG_MOTO_ACCESS_KEY_ID", &moto.creds().access_key)
            .env("RCLONE_CONFIG_MOTO_SECRET_ACCESS_KEY", &moto.creds().secret_key)
            .env("RCLONE_CONFIG_MOTO_REGION", &moto.creds().region)
            .args(args);
        let o = c.output().expect("run rclone");
        assert!(
            o.status.success(),
            "rclone {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    let remote = format!("moto:{}/copied", moto.bucket());
    rclone(&["copy", env.repo().to_str().unwrap(), &remote]);
    let at_s3 = |args: &[&str]| {
        let mut c = env.cmd_at(std::path::Path::new(&moto.url("copied")));
        for (k, v) in moto.envs() {
            c.env(k, v);
        }
        run(c.args(args))
    };
    at_s3(&["check", "--read-data"]).success();
    let target = env.path("from-s3");
    at_s3(&["restore", &snap, "--target", target.to_str().unwrap()]).success();
    assert_trees_equal(&src, &target, false);
    // A backup made on S3, copied back, opens locally.
    write(src.join("added on s3"), b"new");
    let on_s3 = at_s3(&["backup", src.to_str().unwrap()]).success().snapshot_id();
    let back = env.path("back");
    rclone(&["copy", &remote, back.to_str().unwrap()]);
    run(env.cmd_at(&back).args(["check", "--read-data"])).success();
    let target = env.path("from-back");
    run(env
        .cmd_at(&back)
        .args(["restore", &on_s3, "--target", target.to_str().unwrap()]))
    .success();
    assert_trees_equal(&src, &target, false);
}
