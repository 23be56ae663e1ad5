//! `status`: the newest snapshot of each project and how old it is. A project is a set of
//! backed-up paths on one host (retention groups the same way), named after the base name
//! of its first path; two machines' copies of a project are two rows.

use std::collections::BTreeMap;

use crate::format::{Snapshot, Time};
use crate::id::SnapshotId;

/// One project's newest snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProjectStatus {
    /// Base name of the first path (`/` for the root).
    pub project: String,
    pub paths: Vec<Vec<u8>>,
    pub host: String,
    pub snapshot: SnapshotId,
    pub time: Time,
    /// UTC offset of the snapshot's time, as recorded.
    pub utc_offset: i32,
    /// Seconds from the snapshot to `now`; negative when the snapshot's clock was ahead.
    pub age_seconds: i64,
}

/// The base name of a raw path: its last non-empty component, or `/`.
pub fn project_name(path: &[u8]) -> String {
    match path.split(|&b| b == b'/').rfind(|c| !c.is_empty()) {
        Some(name) => crate::format_name(name),
        None => "/".to_string(),
    }
}

/// The newest snapshot (by time, ties broken by id) of each host and path set, sorted by
/// project name, then host, then paths.
pub fn newest_per_project(snaps: &[(SnapshotId, Snapshot)], now: Time) -> Vec<ProjectStatus> {
    let mut newest: BTreeMap<(&str, &[Vec<u8>]), (&SnapshotId, &Snapshot)> = BTreeMap::new();
    for (id, s) in snaps {
        let key = (s.hostname.as_str(), s.paths.as_slice());
        let newer = |(old_id, old): &(&SnapshotId, &Snapshot)| (s.time, id) > (old.time, *old_id);
        if newest.get(&key).is_none_or(newer) {
            newest.insert(key, (id, s));
        }
    }
    let mut out: Vec<ProjectStatus> = newest
        .into_values()
        .map(|(id, s)| ProjectStatus {
            project: s.paths.first().map_or_else(|| "/".to_string(), |p| project_name(p)),
            paths: s.paths.clone(),
            host: s.hostname.clone(),
            snapshot: *id,
            time: s.time,
            utc_offset: s.utc_offset,
            age_seconds: age_seconds(s.time, now),
        })
        .collect();
    out.sort_by(|a, b| (&a.project, &a.host, &a.paths).cmp(&(&b.project, &b.host, &b.paths)));
    out
}

fn age_seconds(then: Time, now: Time) -> i64 {
    let mut secs = now.secs.saturating_sub(then.secs);
    if now.nanos < then.nanos {
        secs = secs.saturating_sub(1);
    }
    secs
}

/// An age for people: the two largest units (`45s`, `12m`, `3h 05m`, `2d 04h`).
pub fn format_age(secs: i64) -> String {
    if secs < 0 {
        return format!("{} in the future", format_age(-secs));
    }
    let (d, h, m, s) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
    if d > 0 {
        format!("{d}d {h:02}h")
    } else if h > 0 {
        format!("{h}h {m:02}m")
    } else if m > 0 {
        format!("{m}m")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(host: &str, paths: &[&str], secs: i64) -> Snapshot {
        Snapshot {
            time: Time { secs, nanos: 0 },
            utc_offset: 0,
            hostname: host.into(),
            username: "u".into(),
            paths: paths.iter().map(|p| p.as_bytes().to_vec()).collect(),
            tags: vec![],
            note: None,
            tree: crate::id::TreeId([0; 32]),
            root: None,
            parent: None,
            summary: Default::default(),
            program_version: String::new(),
            origin: None,
            seen: Vec::new(),
            git: None,
        }
    }

    fn id(b: u8) -> SnapshotId {
        SnapshotId([b; 32])
    }

    #[test]
    fn newest_per_host_and_paths() {
        let snaps = vec![
            (id(1), snap("a", &["/w/app"], 100)),
            (id(2), snap("a", &["/w/app"], 300)),
            (id(3), snap("b", &["/w/app"], 200)),
            (id(4), snap("a", &["/x/app"], 50)),
            (id(5), snap("a", &["/w/lib", "/w/app"], 10)),
            // A tie on time: the larger id wins, as `latest` does.
            (id(7), snap("a", &["/w/zz"], 5)),
            (id(6), snap("a", &["/w/zz"], 5)),
        ];
        let now = Time { secs: 1000, nanos: 0 };
        let got: Vec<(String, String, SnapshotId, i64)> = newest_per_project(&snaps, now)
            .into_iter()
            .map(|p| (p.project, p.host, p.snapshot, p.age_seconds))
            .collect();
        assert_eq!(
            got,
            vec![
                ("app".into(), "a".into(), id(2), 700),
                ("app".into(), "a".into(), id(4), 950),
                ("app".into(), "b".into(), id(3), 800),
                ("lib".into(), "a".into(), id(5), 990),
                ("zz".into(), "a".into(), id(7), 995),
            ]
        );
        assert!(newest_per_project(&[], now).is_empty());
    }

    #[test]
    fn names_and_ages() {
        assert_eq!(project_name(b"/home/u/app/"), "app");
        assert_eq!(project_name(b"/"), "/");
        assert_eq!(project_name(b"rel"), "rel");
        assert_eq!(format_age(0), "0s");
        assert_eq!(format_age(59), "59s");
        assert_eq!(format_age(60), "1m");
        assert_eq!(format_age(3 * 3600 + 5 * 60 + 9), "3h 05m");
        assert_eq!(format_age(2 * 86_400 + 4 * 3600 + 59), "2d 04h");
        assert_eq!(format_age(-90), "1m in the future");
        let t = |secs, nanos| Time { secs, nanos };
        assert_eq!(age_seconds(t(10, 500), t(20, 400)), 9);
        assert_eq!(age_seconds(t(10, 500), t(20, 500)), 10);
    }
}
