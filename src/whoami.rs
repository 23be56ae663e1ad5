//! The user name a snapshot records: `$USER`, else the name the passwd database (or NSS)
//! gives this process's uid, else the uid in decimal.

/// `$USER` when set and not empty; else the account name of the real uid; else the uid.
pub fn username() -> String {
    let uid = rustix::process::getuid().as_raw();
    from(std::env::var("USER").ok(), uid, name_of_uid(uid))
}

fn from(user: Option<String>, uid: u32, looked_up: Option<String>) -> String {
    user.filter(|u| !u.is_empty())
        .or(looked_up)
        .unwrap_or_else(|| uid.to_string())
}

/// The account name of `uid` (getpwuid_r), `None` when there is no entry.
fn name_of_uid(uid: u32) -> Option<String> {
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: all-zero bytes are a valid `passwd` (null pointers, zero ids).
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: `pw`, `buf` (with its true length) and `result` outlive the call;
        // getpwuid_r writes the strings it points `pw` at into `buf` only.
        let rc = unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut result) };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if rc != 0 || result.is_null() || pw.pw_name.is_null() {
            return None;
        }
        // SAFETY: on success `pw_name` points at a NUL-terminated string inside `buf`.
        let name = unsafe { std::ffi::CStr::from_ptr(pw.pw_name) };
        let name = name.to_string_lossy().into_owned();
        return (!name.is_empty()).then_some(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_wins_then_the_passwd_name_then_the_uid() {
        assert_eq!(from(Some("ann".into()), 5, Some("bob".into())), "ann");
        assert_eq!(from(Some("".into()), 5, Some("bob".into())), "bob");
        assert_eq!(from(None, 5, None), "5");
    }

    #[test]
    fn root_has_a_name() {
        assert_eq!(name_of_uid(0).as_deref(), Some("root"));
    }
}
