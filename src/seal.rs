//! Encrypted exported archives in the age format (age-encryption.org/v1), so that `age -d`
//! (or rage) decrypts them without this program: with a passphrase (an scrypt stanza) or
//! to X25519 recipients (`age1…` public keys, as `age-keygen` prints). The archive stream
//! is encrypted as it is written (64 KiB STREAM chunks): memory stays small.
//!
//! Only this module speaks to the `age` crate.

use std::io::{self, Write};
use std::str::FromStr;

use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// scrypt work factor (log2 N) of a passphrase-encrypted archive: the reference age
/// implementation's default, so every age decrypts it in about a second and none refuses
/// it as too costly (the crate would calibrate to the machine writing it).
pub const SCRYPT_LOG_N: u8 = 18;

/// How an archive is encrypted.
#[derive(Clone)]
pub enum ArchiveEncryption {
    /// A passphrase (non-empty UTF-8, as age reads one).
    Passphrase(Zeroizing<String>),
    /// X25519 recipients, checked `age1…` strings; at least one.
    Recipients(Vec<String>),
}

impl std::fmt::Debug for ArchiveEncryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ArchiveEncryption::Passphrase(_) => f.write_str("Passphrase(<redacted>)"),
            ArchiveEncryption::Recipients(r) => f.debug_tuple("Recipients").field(r).finish(),
        }
    }
}

impl ArchiveEncryption {
    /// A passphrase from its bytes (a file's, a variable's, a prompt's).
    pub fn passphrase(bytes: &[u8], from: &str) -> Result<ArchiveEncryption> {
        if bytes.is_empty() {
            return Err(Error::Invalid(format!(
                "the archive passphrase {from} is empty: give a non-empty passphrase; nothing was written"
            )));
        }
        let s = std::str::from_utf8(bytes).map_err(|_| {
            Error::Invalid(format!(
                "the archive passphrase {from} is not valid UTF-8 (age reads passphrases as text); nothing was written"
            ))
        })?;
        Ok(ArchiveEncryption::Passphrase(Zeroizing::new(s.to_string())))
    }

    /// Recipients: each checked. `from` says where they came from, for errors.
    pub fn recipients(list: Vec<(String, String)>) -> Result<ArchiveEncryption> {
        if list.is_empty() {
            return Err(Error::Invalid(
                "no recipient given: a recipients file without an age1… line encrypts to nobody".into(),
            ));
        }
        let mut out = Vec::with_capacity(list.len());
        for (r, from) in list {
            check_recipient(&r, &from)?;
            out.push(r);
        }
        Ok(ArchiveEncryption::Recipients(out))
    }

    fn encryptor(&self) -> Result<age::Encryptor> {
        match self {
            ArchiveEncryption::Passphrase(p) => {
                let mut r = age::scrypt::Recipient::new(age::secrecy::SecretString::from(p.as_str().to_owned()));
                r.set_work_factor(SCRYPT_LOG_N);
                age::Encryptor::with_recipients(std::iter::once(&r as &dyn age::Recipient))
                    .map_err(|e| Error::Invalid(format!("age: {e}")))
            }
            ArchiveEncryption::Recipients(list) => {
                let parsed: Vec<age::x25519::Recipient> = list
                    .iter()
                    .map(|r| age::x25519::Recipient::from_str(r).map_err(|e| Error::Invalid(format!("{r}: {e}"))))
                    .collect::<Result<_>>()?;
                age::Encryptor::with_recipients(parsed.iter().map(|r| r as &dyn age::Recipient))
                    .map_err(|e| Error::Invalid(format!("age: {e}")))
            }
        }
    }
}

/// Check one recipient: an X25519 public key as `age-keygen` prints it.
pub fn check_recipient(r: &str, from: &str) -> Result<()> {
    age::x25519::Recipient::from_str(r).map(|_| ()).map_err(|e| {
        let hint = if r.starts_with("ssh-") {
            " (SSH keys are not supported as recipients: make an age key with `age-keygen`)"
        } else if r.starts_with("AGE-SECRET-KEY-") {
            " (that is a secret key: give its public key, the `age1…` line `age-keygen -y` prints)"
        } else {
            ""
        };
        // A secret key given by mistake is not repeated in the error (logs, terminals).
        let shown = if r.starts_with("AGE-SECRET-KEY-") {
            "AGE-SECRET-KEY-…".to_string()
        } else {
            format!("{r:?}")
        };
        Error::Invalid(format!(
            "recipient {shown} ({from}) is not an age X25519 public key (age1…): {e}{hint}"
        ))
    })
}

/// The recipients of a recipients file (as `age -R` reads one): one `age1…` key per line;
/// blank lines and lines starting with `#` are skipped. Each with where it came from.
pub fn parse_recipients_file(text: &str, name: &str) -> Vec<(String, String)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .map(|(i, l)| (l.to_string(), format!("{name}, line {}", i + 1)))
        .collect()
}

/// A writer that encrypts into `W` (or passes through without encryption); [`finish`]
/// writes the last chunk, without which an age file does not decrypt.
///
/// [`finish`]: Sealed::finish
pub enum Sealed<W: Write> {
    Plain(W),
    Age(age::stream::StreamWriter<W>),
}

impl<W: Write> Sealed<W> {
    /// Start writing into `w`: with encryption, the age header is written now.
    pub fn new(w: W, encryption: Option<&ArchiveEncryption>) -> Result<Sealed<W>> {
        match encryption {
            None => Ok(Sealed::Plain(w)),
            Some(e) => Ok(Sealed::Age(
                e.encryptor()?
                    .wrap_output(w)
                    .map_err(|e| Error::io("the encrypted archive", e))?,
            )),
        }
    }

    pub fn finish(self) -> io::Result<W> {
        match self {
            Sealed::Plain(w) => Ok(w),
            Sealed::Age(s) => s.finish(),
        }
    }
}

impl<W: Write> Write for Sealed<W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self {
            Sealed::Plain(w) => w.write(b),
            Sealed::Age(s) => s.write(b),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sealed::Plain(w) => w.flush(),
            Sealed::Age(s) => s.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn seal(data: &[u8], e: &ArchiveEncryption) -> Vec<u8> {
        let mut s = Sealed::new(Vec::new(), Some(e)).expect("encryptor");
        // Several writes across the 64 KiB chunk boundary.
        for part in data.chunks(7000) {
            s.write_all(part).unwrap();
        }
        s.finish().unwrap()
    }

    fn open(sealed: &[u8], identity: &dyn age::Identity) -> std::result::Result<Vec<u8>, age::DecryptError> {
        let d = age::Decryptor::new(sealed)?;
        let mut r = d.decrypt(std::iter::once(identity))?;
        let mut out = Vec::new();
        r.read_to_end(&mut out).map_err(age::DecryptError::Io)?;
        Ok(out)
    }

    fn data() -> Vec<u8> {
        (0..200_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect()
    }

    #[test]
    fn passphrase_round_trip_with_the_age_crate() {
        let data = data();
        let e = ArchiveEncryption::passphrase(b"tr0ub4dor & 3", "in a test").unwrap();
        let sealed = seal(&data, &e);
        assert!(sealed.starts_with(b"age-encryption.org/v1\n-> scrypt "));
        // The work factor every age accepts.
        let header = String::from_utf8_lossy(&sealed[..200]);
        let stanza = header.lines().nth(1).unwrap();
        assert!(stanza.ends_with(&format!(" {SCRYPT_LOG_N}")), "{stanza}");
        let d = age::Decryptor::new(&sealed[..]).unwrap();
        assert!(d.is_scrypt());
        let id = age::scrypt::Identity::new(age::secrecy::SecretString::from("tr0ub4dor & 3".to_string()));
        assert_eq!(open(&sealed, &id).unwrap(), data);
        let wrong = age::scrypt::Identity::new(age::secrecy::SecretString::from("tr0ub4dor & 4".to_string()));
        assert!(open(&sealed, &wrong).is_err());
        // A flipped byte anywhere in the payload is detected.
        let mut bad = sealed.clone();
        let n = bad.len();
        bad[n - 100] ^= 1;
        assert!(open(&bad, &id).is_err());
        // A file cut short (its last chunk missing) is detected.
        let cut = &sealed[..sealed.len() - 1000];
        assert!(open(cut, &id).is_err());
        assert!(ArchiveEncryption::passphrase(b"", "x").is_err());
        assert!(ArchiveEncryption::passphrase(b"\xff\xfe", "x").is_err());
    }

    #[test]
    fn recipients_round_trip_and_checks() {
        let data = data();
        let a = age::x25519::Identity::generate();
        let b = age::x25519::Identity::generate();
        let e = ArchiveEncryption::recipients(vec![
            (a.to_public().to_string(), "a".into()),
            (b.to_public().to_string(), "b".into()),
        ])
        .unwrap();
        let sealed = seal(&data, &e);
        assert!(sealed.starts_with(b"age-encryption.org/v1\n-> X25519 "));
        assert_eq!(open(&sealed, &a).unwrap(), data);
        assert_eq!(open(&sealed, &b).unwrap(), data);
        let c = age::x25519::Identity::generate();
        assert!(open(&sealed, &c).is_err());

        let err = check_recipient("age1notakey", "--recipient").unwrap_err().to_string();
        assert!(err.contains("age1notakey") && err.contains("--recipient"), "{err}");
        let err = check_recipient("ssh-ed25519 AAAA", "x").unwrap_err().to_string();
        assert!(err.contains("SSH keys"), "{err}");
        assert!(ArchiveEncryption::recipients(vec![]).is_err());
        let file = format!("# team\n\n{}\n  {}  \n", a.to_public(), b.to_public());
        let parsed = parse_recipients_file(&file, "keys.txt");
        assert_eq!(
            parsed,
            vec![
                (a.to_public().to_string(), "keys.txt, line 3".to_string()),
                (b.to_public().to_string(), "keys.txt, line 4".to_string()),
            ]
        );
        assert!(format!("{:?}", ArchiveEncryption::passphrase(b"secret", "x").unwrap()).contains("redacted"));
    }
}
