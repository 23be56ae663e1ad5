//! Retention rules (`--keep-*`), restic's semantics: snapshots are grouped by host and
//! paths; within a group, newest first, each `--keep-<period> N` keeps the newest snapshot
//! of each of the N most recent periods (in local time, ISO weeks) that have snapshots;
//! one snapshot may satisfy several rules. Pure: no I/O.

use jiff::tz::TimeZone;
use jiff::{Span, Timestamp};

use crate::error::{Error, Result};
use crate::format::Snapshot;
use crate::id::SnapshotId;

#[derive(Clone, Debug, Default)]
pub struct KeepRules {
    pub last: Option<u32>,
    pub hourly: Option<u32>,
    pub daily: Option<u32>,
    pub weekly: Option<u32>,
    pub monthly: Option<u32>,
    pub yearly: Option<u32>,
    pub tags: Vec<String>,
    /// Keep everything within this span of the group's newest snapshot.
    pub within: Option<Span>,
}

impl KeepRules {
    /// No rule given. A count of 0, a zero span or an empty tag counts as not given
    /// (restic's rule): such rules never mean "keep nothing".
    pub fn is_empty(&self) -> bool {
        let mut r = self.clone();
        r.drop_void_rules();
        r.last.is_none()
            && r.hourly.is_none()
            && r.daily.is_none()
            && r.weekly.is_none()
            && r.monthly.is_none()
            && r.yearly.is_none()
            && r.tags.is_empty()
            && r.within.is_none()
    }

    /// Remove the rules that keep nothing: a count of 0 (`--keep-last 0`, as a script with
    /// an empty variable produces), a zero span (`--keep-within 0d`) and an empty tag.
    /// Returns the flags removed (`--keep-last`), for a warning.
    pub fn drop_void_rules(&mut self) -> Vec<&'static str> {
        let mut dropped = Vec::new();
        for (flag, n) in [
            ("--keep-last", &mut self.last),
            ("--keep-hourly", &mut self.hourly),
            ("--keep-daily", &mut self.daily),
            ("--keep-weekly", &mut self.weekly),
            ("--keep-monthly", &mut self.monthly),
            ("--keep-yearly", &mut self.yearly),
        ] {
            if *n == Some(0) {
                *n = None;
                dropped.push(flag);
            }
        }
        if self.within.is_some_and(|s| s.is_zero()) {
            self.within = None;
            dropped.push("--keep-within");
        }
        let tags = self.tags.len();
        self.tags.retain(|t| !t.is_empty());
        if self.tags.len() < tags {
            dropped.push("--keep-tag");
        }
        dropped
    }
}

/// Parse restic-style durations: `2y6m`, `14d`, `36h`, `1y2m3d4h`.
pub fn parse_within(s: &str) -> Result<Span> {
    let bad = || Error::Invalid(format!("--keep-within {s:?}: use a duration like 14d, 6m, 1y2m, 36h"));
    let mut span = Span::new();
    let mut num = String::new();
    let mut any = false;
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: i64 = num.parse().map_err(|_| bad())?;
        num.clear();
        span = match c {
            'y' => span.try_years(n),
            'm' => span.try_months(n),
            'w' => span.try_weeks(n),
            'd' => span.try_days(n),
            'h' => span.try_hours(n),
            _ => return Err(bad()),
        }
        .map_err(|_| bad())?;
        any = true;
    }
    if !num.is_empty() || !any {
        return Err(bad());
    }
    Ok(span)
}

/// A snapshot's decision and the rules that kept it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub id: SnapshotId,
    pub keep: bool,
    pub reasons: Vec<String>,
}

fn ts(s: &Snapshot) -> Timestamp {
    Timestamp::new(s.time.secs, s.time.nanos as i32).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Decide, for every snapshot, keep or forget, grouping by host and paths. `tz` is the
/// local zone for the periods.
pub fn apply(snaps: &[(SnapshotId, Snapshot)], rules: &KeepRules, tz: &TimeZone) -> Vec<Decision> {
    let by_host_and_paths = |s: &Snapshot| {
        let mut paths = s.paths.clone();
        paths.sort();
        (s.hostname.clone(), paths)
    };
    apply_by(snaps, rules, tz, by_host_and_paths)
        .into_iter()
        .flat_map(|(_, d)| d)
        .collect()
}

/// [`apply`] with the groups given by `key`: each group is thinned on its own (every
/// `--keep-*` count applies within each). Groups in `key` order, each newest first.
pub fn apply_by<K: Ord>(
    snaps: &[(SnapshotId, Snapshot)],
    rules: &KeepRules,
    tz: &TimeZone,
    key: impl Fn(&Snapshot) -> K,
) -> Vec<(K, Vec<Decision>)> {
    let mut groups: std::collections::BTreeMap<K, Vec<&(SnapshotId, Snapshot)>> = Default::default();
    for s in snaps {
        groups.entry(key(&s.1)).or_default().push(s);
    }
    let mut all = Vec::new();
    for (k, mut group) in groups {
        let mut out = Vec::new();
        // Newest first; ties broken by id, like `latest`.
        group.sort_by(|a, b| b.1.time.cmp(&a.1.time).then(b.0.cmp(&a.0)));
        let newest = group.first().map(|s| ts(&s.1));
        type Bucket = fn(&jiff::ZonedDateTime) -> (i64, i64, i64, i64);
        let periods: [(&str, Option<u32>, Bucket); 6] = [
            ("last", rules.last, |_| (0, 0, 0, 0)),
            ("hourly", rules.hourly, |z| {
                (z.year() as i64, z.month() as i64, z.day() as i64, z.hour() as i64)
            }),
            ("daily", rules.daily, |z| {
                (z.year() as i64, z.month() as i64, z.day() as i64, 0)
            }),
            ("weekly", rules.weekly, |z| {
                let w = z.date().iso_week_date();
                (w.year() as i64, w.week() as i64, 0, 0)
            }),
            ("monthly", rules.monthly, |z| (z.year() as i64, z.month() as i64, 0, 0)),
            ("yearly", rules.yearly, |z| (z.year() as i64, 0, 0, 0)),
        ];
        let mut left: Vec<Option<u32>> = periods.iter().map(|p| p.1).collect();
        let mut last_bucket: Vec<Option<(i64, i64, i64, i64)>> = vec![None; periods.len()];
        for (i, (id, s)) in group.iter().map(|p| (&p.0, &p.1)).enumerate() {
            let z = ts(s).to_zoned_datetime(tz.clone());
            let mut reasons = Vec::new();
            for (k, (name, _, bucket)) in periods.iter().enumerate() {
                let Some(n) = left[k] else { continue };
                // "last" counts snapshots, not periods: every snapshot is its own bucket.
                let b = if k == 0 { (i as i64, 0, 0, 0) } else { bucket(&z) };
                if n > 0 && last_bucket[k] != Some(b) {
                    reasons.push(format!("{name} {}", periods[k].1.unwrap_or(0) - n + 1));
                    left[k] = Some(n - 1);
                    last_bucket[k] = Some(b);
                }
            }
            for t in &rules.tags {
                if s.tags.contains(t) {
                    reasons.push(format!("tag {t}"));
                }
            }
            if let (Some(span), Some(newest)) = (rules.within, newest) {
                let cutoff = newest
                    .to_zoned_datetime(tz.clone())
                    .checked_sub(span)
                    .map(|z| z.timestamp());
                if cutoff.is_ok_and(|c| ts(s) >= c) {
                    reasons.push("within".to_string());
                }
            }
            out.push(Decision {
                id: *id,
                keep: !reasons.is_empty(),
                reasons,
            });
        }
        all.push((k, out));
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{Summary, Time};
    use crate::id::TreeId;

    fn snap(i: u8, when: &str, tags: &[&str]) -> (SnapshotId, Snapshot) {
        let t: Timestamp = when.parse().unwrap();
        (
            SnapshotId([i; 32]),
            Snapshot {
                time: Time {
                    secs: t.as_second(),
                    nanos: 0,
                },
                utc_offset: 0,
                hostname: "h".into(),
                username: "u".into(),
                paths: vec![b"/p".to_vec()],
                tags: tags.iter().map(|s| s.to_string()).collect(),
                note: None,
                tree: TreeId([0; 32]),
                root: None,
                parent: None,
                summary: Summary::default(),
                program_version: String::new(),
                origin: None,
                seen: Vec::new(),
                git: None,
            },
        )
    }

    fn kept(d: &[Decision]) -> Vec<u8> {
        let mut v: Vec<u8> = d.iter().filter(|d| d.keep).map(|d| d.id.0[0]).collect();
        v.sort();
        v
    }

    #[test]
    fn last_daily_weekly_monthly() {
        let tz = TimeZone::UTC;
        let s = vec![
            snap(1, "2026-01-01T10:00:00Z", &[]),
            snap(2, "2026-01-01T12:00:00Z", &[]),
            snap(3, "2026-01-02T09:00:00Z", &[]),
            snap(4, "2026-01-09T09:00:00Z", &["keep"]),
            snap(5, "2026-02-03T09:00:00Z", &[]),
            snap(6, "2026-02-03T10:00:00Z", &[]),
        ];
        let r = |f: fn(&mut KeepRules)| {
            let mut k = KeepRules::default();
            f(&mut k);
            kept(&apply(&s, &k, &tz))
        };
        assert_eq!(r(|k| k.last = Some(2)), vec![5, 6]);
        assert_eq!(r(|k| k.daily = Some(3)), vec![3, 4, 6]);
        // 2026-01-01 and 01-02 are ISO week 1 of 2026; 01-09 week 2; 02-03 week 6.
        assert_eq!(r(|k| k.weekly = Some(10)), vec![3, 4, 6]);
        assert_eq!(r(|k| k.monthly = Some(1)), vec![6]);
        assert_eq!(r(|k| k.yearly = Some(5)), vec![6]);
        assert_eq!(r(|k| k.tags = vec!["keep".into()]), vec![4]);
        assert_eq!(r(|k| k.within = Some(parse_within("7d").unwrap())), vec![5, 6]);
        assert_eq!(r(|_| {}), Vec::<u8>::new());
    }

    #[test]
    fn local_time_across_dst() {
        // In Berlin, 2026-03-29 01:30 UTC is 03:30 CEST; 00:30 UTC is 01:30 CET: the same day.
        let tz = TimeZone::get("Europe/Berlin").unwrap();
        let s = vec![
            snap(1, "2026-03-28T23:30:00Z", &[]),
            snap(2, "2026-03-29T01:30:00Z", &[]),
        ];
        let k = KeepRules {
            daily: Some(5),
            ..Default::default()
        };
        assert_eq!(kept(&apply(&s, &k, &tz)), vec![2]);
        // In UTC they are different days.
        assert_eq!(kept(&apply(&s, &k, &TimeZone::UTC)), vec![1, 2]);
    }

    /// Zero counts, zero spans and empty tags are no rules: alone they leave the rules
    /// empty (so nothing is forgotten), beside other rules they change nothing.
    #[test]
    fn void_rules_count_as_not_given() {
        let void = KeepRules {
            last: Some(0),
            hourly: Some(0),
            daily: Some(0),
            weekly: Some(0),
            monthly: Some(0),
            yearly: Some(0),
            tags: vec![String::new()],
            within: Some(parse_within("0y0d").unwrap()),
        };
        assert!(void.is_empty());
        let mut r = void.clone();
        assert_eq!(r.drop_void_rules().len(), 8);
        assert!(r.last.is_none() && r.within.is_none() && r.tags.is_empty());
        let mut r = KeepRules { daily: Some(2), ..void };
        assert!(!r.is_empty());
        r.drop_void_rules();
        assert_eq!(r.daily, Some(2));
        assert!(r.last.is_none());
    }

    #[test]
    fn within_parses() {
        assert!(parse_within("1y2m3d4h").is_ok());
        assert!(parse_within("5").is_err());
        assert!(parse_within("5x").is_err());
        assert!(parse_within("").is_err());
    }
}
