//! `ramkeyctl log`'s reading of the box's logs, with the shipper's [`sources`]: the recent
//! lines of one log or several (merged by time), `--since` a moment, and `-f` following.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::ship::sources::{self, Select, Sources};
use super::ship::syslog::{Origin, split_line};
use crate::base::clock::rfc3339;

/// The most read of each file.
const FILE_LIMIT: u64 = 4 << 20;

/// Where the logs are: the platform's folder, the zones' instances folder and the log
/// folder inside a zone.
pub struct Places<'a> {
    /// `/var/log/ramkey`.
    pub log_dir: &'a Path,
    /// Where the zones' state folders are.
    pub instances: &'a Path,
    /// `var/log/ramkey`, inside a zone.
    pub zone_log_dir: &'a str,
}

/// How a line is printed: bare when one log is read, else after its origin.
fn label(select: &Select, origin: &Origin, line: &str) -> String {
    match select {
        Select::Platform(_) | Select::Zone(_, Some(_)) => line.to_owned(),
        _ => match &origin.msgid {
            Some(service) => format!("{}/{service}: {line}", origin.app),
            None => format!("{}: {line}", origin.app),
        },
    }
}

/// `10m`, `30s`, `2h`, `1d`, or bare seconds.
pub fn parse_age(text: &str) -> Option<Duration> {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let n: u64 = digits.parse().ok()?;
    let unit = match &text[digits.len()..] {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(n.checked_mul(unit)?))
}

/// The last `lines` lines (all of them when `None`) of the logs `select` wants, written after
/// `since` when given, oldest first; an error names what exists when nothing matches.
pub fn recent(
    places: &Places<'_>,
    select: &Select,
    since: Option<SystemTime>,
    lines: Option<usize>,
) -> Result<Vec<String>, String> {
    let files = sources::files(places.log_dir, places.instances, places.zone_log_dir, select);
    if files.is_empty() && *select != Select::All {
        let every: Vec<String> = sources::files(places.log_dir, places.instances, places.zone_log_dir, &Select::All)
            .iter()
            .map(|f| match &f.origin.msgid {
                Some(s) => format!("zone {} {s}", f.origin.app),
                None => f.stem.clone(),
            })
            .collect();
        return Err(format!("no such log; the box has: {}", every.join(", ")));
    }
    let cutoff = since.map(rfc3339);
    let mut all: Vec<(String, String)> = Vec::new();
    for file in &files {
        for line in file.history(FILE_LIMIT) {
            let stamp = split_line(&line).0.unwrap_or_default().to_owned();
            if cutoff.as_ref().is_some_and(|c| stamp < *c) {
                continue;
            }
            all.push((stamp, label(select, &file.origin, &line)));
        }
    }
    // Stable: lines of one file with the same millisecond keep their order.
    all.sort_by(|a, b| a.0.cmp(&b.0));
    let skip = lines.map_or(0, |n| all.len().saturating_sub(n));
    Ok(all.into_iter().skip(skip).map(|(_, l)| l).collect())
}

/// Prints what is added to the logs `select` wants, from now on, until killed (or `out` fails).
pub fn follow(places: &Places<'_>, select: &Select, out: &mut dyn Write) -> Result<(), String> {
    let mut sources = Sources {
        select: select.clone(),
        ..Sources::default()
    };
    // Start at the end of what is there: read it all, unprinted.
    while sources.pass(places.log_dir, places.instances, places.zone_log_dir, &mut |_, _| true) > 0 {}
    loop {
        let mut failed = None;
        sources.pass(
            places.log_dir,
            places.instances,
            places.zone_log_dir,
            &mut |origin, line| {
                if failed.is_none()
                    && let Err(e) = writeln!(out, "{}", label(select, origin, line))
                {
                    failed = Some(e.to_string());
                }
                true
            },
        );
        if let Some(e) = failed.or_else(|| out.flush().err().map(|e| e.to_string())) {
            return Err(e);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    #[test]
    fn ages_read_like_people_write_them() {
        assert_eq!(parse_age("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_age("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_age("45"), Some(Duration::from_secs(45)));
        assert_eq!(parse_age("1d"), Some(Duration::from_secs(86_400)));
        assert_eq!(parse_age("10 minutes"), None);
        assert_eq!(parse_age("m"), None);
    }

    #[test]
    fn recent_lines_merge_by_time_and_since_cuts_the_old_ones() {
        let dir = tempfile::tempdir().unwrap();
        let (log, instances) = (dir.path().join("log"), dir.path().join("instances"));
        let zone = instances.join("web/upper/var/log/ramkey");
        std::fs::create_dir_all(&log).unwrap();
        std::fs::create_dir_all(&zone).unwrap();
        std::fs::write(
            log.join("ramkey.log"),
            "2026-12-05T10:00:00.000Z booted\n2026-12-05T10:00:03.000Z ready\n",
        )
        .unwrap();
        std::fs::write(log.join("ramkey.log.1"), "2026-12-05T09:00:00.000Z last boot\n").unwrap();
        std::fs::write(zone.join("nginx.log"), "2026-12-05T10:00:02.000Z listening\n").unwrap();
        let places = Places {
            log_dir: &log,
            instances: &instances,
            zone_log_dir: "var/log/ramkey",
        };
        let all = recent(&places, &Select::All, None, None).unwrap();
        assert_eq!(
            all,
            [
                "ramkey: 2026-12-05T09:00:00.000Z last boot",
                "ramkey: 2026-12-05T10:00:00.000Z booted",
                "web/nginx: 2026-12-05T10:00:02.000Z listening",
                "ramkey: 2026-12-05T10:00:03.000Z ready",
            ]
        );
        let since = UNIX_EPOCH + Duration::from_secs(1_796_464_801); // 2026-12-05T10:00:01Z
        let newer = recent(&places, &Select::All, Some(since), None).unwrap();
        assert_eq!(newer.len(), 2, "{newer:?}");
        let one = recent(
            &places,
            &Select::Zone("web".into(), Some("nginx".into())),
            None,
            Some(5),
        )
        .unwrap();
        assert_eq!(one, ["2026-12-05T10:00:02.000Z listening"]);
        let last = recent(&places, &Select::Platform("ramkey".into()), None, Some(1)).unwrap();
        assert_eq!(last, ["2026-12-05T10:00:03.000Z ready"]);
        let err = recent(&places, &Select::Platform("nope".into()), None, None).unwrap_err();
        assert!(err.contains("ramkey, zone web nginx"), "{err}");
    }
}
