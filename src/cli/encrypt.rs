//! `export --archive F --encrypt` / `--recipient` / `--recipients-file`: how the archive is
//! encrypted (age), where the passphrase comes from, and the `.age` name.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use projectclone::seal::{ArchiveEncryption, parse_recipients_file};

use super::{password_from_env, prompt, read_password_file};

/// The encryption flags of `export`.
pub struct Flags<'a> {
    pub encrypt: bool,
    pub recipients: &'a [String],
    pub recipients_files: &'a [PathBuf],
    pub password_file: &'a Option<PathBuf>,
}

impl Flags<'_> {
    /// Whether any flag asks for encryption.
    pub fn wanted(&self) -> bool {
        self.encrypt || !self.recipients.is_empty() || !self.recipients_files.is_empty() || self.password_file.is_some()
    }

    /// How to encrypt (`None`: not at all). Recipients when any are given, else a
    /// passphrase: `--encrypt-password-file`, `PROJECTCLONE_ENCRYPT_PASSWORD`, or a prompt
    /// (twice) on a terminal. A dry run asks for no passphrase (it writes nothing).
    pub fn resolve(&self, dry_run: bool) -> Result<Option<ArchiveEncryption>> {
        if !self.wanted() {
            return Ok(None);
        }
        if !self.recipients.is_empty() || !self.recipients_files.is_empty() {
            let mut list: Vec<(String, String)> = self
                .recipients
                .iter()
                .map(|r| (r.clone(), "--recipient".to_string()))
                .collect();
            for f in self.recipients_files {
                let text = std::fs::read_to_string(f)
                    .with_context(|| format!("--recipients-file {}: cannot read it", f.display()))?;
                let found = parse_recipients_file(&text, &f.display().to_string());
                if found.is_empty() {
                    bail!(
                        "--recipients-file {}: no recipient in it (one age1… public key per line; # starts a \
                         comment); nothing was written",
                        f.display()
                    );
                }
                list.extend(found);
            }
            return Ok(Some(ArchiveEncryption::recipients(list)?));
        }
        if dry_run {
            return Ok(None);
        }
        let (p, from) = if let Some(f) = self.password_file {
            (read_password_file(f)?, format!("in the file {}", f.display()))
        } else if let Some(p) = password_from_env("PROJECTCLONE_ENCRYPT_PASSWORD") {
            (p, "in PROJECTCLONE_ENCRYPT_PASSWORD".to_string())
        } else if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
            (
                prompt("archive passphrase: ", Some("repeat the archive passphrase: "))?,
                "typed at the prompt".to_string(),
            )
        } else {
            bail!(
                "--encrypt needs a passphrase and there is no terminal to ask on: give --encrypt-password-file F \
                 or PROJECTCLONE_ENCRYPT_PASSWORD, or encrypt to public keys with --recipient age1… or \
                 --recipients-file F; nothing was written"
            );
        };
        Ok(Some(ArchiveEncryption::passphrase(&p, &from)?))
    }
}

/// The archive's name: `.age` appended when encrypted and not there yet (`-` is stdout).
pub fn archive_name(file: &Path, encrypted: bool) -> PathBuf {
    if !encrypted || file.as_os_str() == "-" || has_age_suffix(file) {
        return file.to_path_buf();
    }
    let mut name = file.as_os_str().to_os_string();
    name.push(".age");
    PathBuf::from(name)
}

fn has_age_suffix(file: &Path) -> bool {
    file.extension().is_some_and(|e| e.eq_ignore_ascii_case("age"))
}

/// The name that says the archive's compression: without its `.age`.
pub fn inner_name(file: &Path) -> PathBuf {
    if has_age_suffix(file) {
        file.with_extension("")
    } else {
        file.to_path_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            archive_name(Path::new("a/app.tar.gz"), true),
            Path::new("a/app.tar.gz.age")
        );
        assert_eq!(
            archive_name(Path::new("app.tar.gz.age"), true),
            Path::new("app.tar.gz.age")
        );
        assert_eq!(archive_name(Path::new("app.tar.gz"), false), Path::new("app.tar.gz"));
        assert_eq!(archive_name(Path::new("-"), true), Path::new("-"));
        assert_eq!(inner_name(Path::new("a/app.tar.zst.age")), Path::new("a/app.tar.zst"));
        assert_eq!(inner_name(Path::new("app.tar")), Path::new("app.tar"));
    }
}
