//! Sizes written for people: `512M`, `1G`, `20G`, `1048576`.

/// Parses a size in bytes: digits with an optional binary suffix K, M, G or T
/// (case-insensitive, `Ki`/`KiB`/`KB` spellings accepted).
///
/// # Errors
/// Says what is wrong; a size of zero is refused.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, suffix) = s.split_at(digits);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("expected a size such as 512M or 20G, not {s:?}"))?;
    let unit = suffix.to_ascii_uppercase();
    let shift = match unit.trim_end_matches('B').trim_end_matches('I') {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(format!("unknown size suffix {suffix:?}; use K, M, G or T")),
    };
    if number == 0 {
        return Err("a size of zero".to_owned());
    }
    number
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{s} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("0").is_err());
        assert!(parse_size("12X").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("99999999999T").is_err());
    }
}
