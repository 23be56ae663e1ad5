//! `schedule suggest`: when to back up a project, from when it changes and when it was
//! backed up. A heuristic over the past, said with its numbers, not a prediction:
//!
//! - the **active weekdays** are those holding at least 5% of the changes;
//! - the **end of the day's work** is the time of day by which 90% of the changes were
//!   made; the suggested backup is the next half hour at least 15 minutes after it;
//! - **coverage** is the share of changes that a snapshot taken within 24 hours after them
//!   saved; the **longest gap** is the longest time between two snapshots (or since the
//!   last one);
//! - a project changed more than 8 times on an active day is also offered `watch`.

use serde::Serialize;

/// Weekday names, Monday first (ISO).
const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// What the suggestion is made from: change and snapshot times (Unix seconds), the local
/// UTC offset (seconds) and the window they cover.
pub struct History {
    pub changes: Vec<i64>,
    pub snapshots: Vec<i64>,
    pub utc_offset: i32,
    pub now: i64,
    pub days: u32,
}

/// The suggestion and the numbers behind it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Suggestion {
    pub changes: usize,
    /// Days of the window with at least one change.
    pub active_days: usize,
    /// Changes per weekday, Monday first.
    pub per_weekday: [usize; 7],
    /// The weekdays a backup is suggested on, Monday first.
    pub weekdays: Vec<&'static str>,
    /// Minutes after local midnight by which 90% of the changes were made.
    pub work_ends: Option<u32>,
    /// The suggested time, minutes after local midnight.
    pub at: u32,
    /// A systemd calendar expression for `schedule install --on-calendar`, or `None` when
    /// weekly is enough (no change in the window).
    pub on_calendar: Option<String>,
    pub snapshots: usize,
    /// Share of changes saved by a snapshot within 24 hours after them (0 to 1).
    pub coverage: Option<f64>,
    /// The longest time without a snapshot in the window, in seconds.
    pub longest_gap: Option<i64>,
    /// Mean changes per active day.
    pub per_active_day: f64,
    /// Whether `watch` fits better than a timer as well.
    pub watch: bool,
}

fn local_day_and_minute(t: i64, offset: i32) -> (i64, u32) {
    let local = t + i64::from(offset);
    (local.div_euclid(86_400), (local.rem_euclid(86_400) / 60) as u32)
}

/// ISO weekday index (Monday 0) of a day number since 1970-01-01 (a Thursday).
fn weekday(day: i64) -> usize {
    ((day + 3).rem_euclid(7)) as usize
}

/// `Mon..Fri` for a run of days, else a comma list; every day: none (daily).
fn weekday_spec(days: &[usize]) -> Option<String> {
    if days.len() == 7 || days.is_empty() {
        return None;
    }
    let run = days.windows(2).all(|w| w[1] == w[0] + 1);
    Some(if run && days.len() > 2 {
        format!("{}..{}", DAYS[days[0]], DAYS[days[days.len() - 1]])
    } else {
        days.iter().map(|d| DAYS[*d]).collect::<Vec<_>>().join(",")
    })
}

pub fn suggest(h: &History) -> Suggestion {
    let since = h.now - i64::from(h.days) * 86_400;
    let mut changes: Vec<i64> = h
        .changes
        .iter()
        .copied()
        .filter(|t| *t >= since && *t <= h.now)
        .collect();
    changes.sort_unstable();
    let mut snaps: Vec<i64> = h
        .snapshots
        .iter()
        .copied()
        .filter(|t| *t >= since && *t <= h.now)
        .collect();
    snaps.sort_unstable();

    let mut per_weekday = [0usize; 7];
    let mut minutes = Vec::new();
    let mut days = std::collections::BTreeSet::new();
    for &t in &changes {
        let (day, minute) = local_day_and_minute(t, h.utc_offset);
        per_weekday[weekday(day)] += 1;
        minutes.push(minute);
        days.insert(day);
    }
    minutes.sort_unstable();
    let work_ends = (!minutes.is_empty()).then(|| minutes[((minutes.len() - 1) * 9) / 10]);
    let at = match work_ends {
        // The next half hour at least 15 minutes after, within the day.
        Some(m) => (((m + 15).div_ceil(30)) * 30).min(23 * 60 + 30),
        None => 18 * 60,
    };
    let weekdays: Vec<usize> = (0..7)
        .filter(|d| !changes.is_empty() && per_weekday[*d] * 20 >= changes.len())
        .collect();
    let time = format!("{:02}:{:02}", at / 60, at % 60);
    let on_calendar = (!changes.is_empty()).then(|| match weekday_spec(&weekdays) {
        Some(spec) => format!("{spec} {time}"),
        None => time.clone(),
    });

    let coverage = (!changes.is_empty()).then(|| {
        let covered = changes
            .iter()
            .filter(|&&c| {
                let i = snaps.partition_point(|s| *s < c);
                snaps.get(i).is_some_and(|s| *s - c <= 86_400)
            })
            .count();
        covered as f64 / changes.len() as f64
    });
    let longest_gap = (!snaps.is_empty()).then(|| {
        snaps
            .windows(2)
            .map(|w| w[1] - w[0])
            .chain([h.now - snaps[snaps.len() - 1]])
            .max()
            .unwrap_or(0)
    });
    let per_active_day = if days.is_empty() {
        0.0
    } else {
        changes.len() as f64 / days.len() as f64
    };
    Suggestion {
        changes: changes.len(),
        active_days: days.len(),
        per_weekday,
        weekdays: weekdays.iter().map(|d| DAYS[*d]).collect(),
        work_ends,
        at,
        on_calendar,
        snapshots: snaps.len(),
        coverage,
        longest_gap,
        per_active_day,
        watch: per_active_day > 8.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-02 was a Monday; 00:00 UTC.
    const MONDAY: i64 = 1_793_577_600;

    fn at(day: i64, h: i64, m: i64) -> i64 {
        MONDAY + day * 86_400 + h * 3600 + m * 60
    }

    #[test]
    fn weekday_work_gives_weekdays_after_the_usual_end() {
        assert_eq!(weekday((MONDAY) / 86_400), 0);
        let mut changes = Vec::new();
        for week in 0..4 {
            for d in 0..5 {
                for (h, m) in [(9, 10), (11, 0), (14, 30), (16, 45), (17, 20)] {
                    changes.push(at(week * 7 + d, h, m));
                }
            }
        }
        // One Saturday change: under 5%.
        changes.push(at(5, 12, 0));
        let s = suggest(&History {
            changes,
            snapshots: vec![at(0, 18, 0), at(7, 18, 0)],
            utc_offset: 0,
            now: at(28, 0, 0),
            days: 90,
        });
        assert_eq!(s.weekdays, vec!["Mon", "Tue", "Wed", "Thu", "Fri"]);
        assert_eq!(s.work_ends, Some(17 * 60 + 20));
        assert_eq!(s.on_calendar.as_deref(), Some("Mon..Fri 18:00"));
        assert_eq!(s.active_days, 21);
        // Week 1's changes were saved by the Monday 18:00 snapshots only on those Mondays.
        assert!((s.coverage.unwrap() - 10.0 / 101.0).abs() < 1e-9, "{:?}", s.coverage);
        assert_eq!(s.longest_gap, Some(at(28, 0, 0) - at(7, 18, 0)));
        assert!(!s.watch);
    }

    #[test]
    fn the_local_offset_moves_the_time_and_no_change_means_weekly() {
        let s = suggest(&History {
            changes: vec![at(2, 20, 0), at(3, 20, 10)],
            snapshots: vec![],
            utc_offset: 3600,
            now: at(10, 0, 0),
            days: 90,
        });
        assert_eq!(s.on_calendar.as_deref(), Some("Wed,Thu 21:30"));
        assert_eq!((s.coverage, s.longest_gap), (Some(0.0), None));
        let none = suggest(&History {
            changes: vec![],
            snapshots: vec![at(0, 1, 0)],
            utc_offset: 0,
            now: at(10, 0, 0),
            days: 90,
        });
        assert_eq!((none.on_calendar, none.coverage), (None, None));
    }
}
