//! Times for exports: `--since/--until` as users write them, and the UTC stamps in file names.

use time::OffsetDateTime;

pub(super) fn utc_stamp(ms: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Parse a `--since/--until` time: ms since the epoch, an RFC 3339 time
/// (`2026-11-28T14:00:00Z`), a UTC date (`2026-11-28`), or a span back from `now_ms`
/// (`90m`, `24h`, `7d`).
pub fn parse_time(s: &str, now_ms: i64) -> Result<i64, String> {
    use time::format_description::well_known::Rfc3339;
    let s = s.trim();
    if s.starts_with('-') {
        return Err(format!(
            "{s:?} is negative: give a time (ms, 2026-11-28T14:00:00Z, 2026-11-28) or a span ago (24h)"
        ));
    }
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    if let Some(unit) = s.chars().last().filter(|c| matches!(c, 's' | 'm' | 'h' | 'd'))
        && let Ok(n) = s[..s.len() - 1].parse::<i64>()
    {
        let per = match unit {
            's' => 1_000,
            'm' => 60_000,
            'h' => 3_600_000,
            _ => 86_400_000,
        };
        return Ok(now_ms.saturating_sub(n.saturating_mul(per)));
    }
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return i64::try_from(t.unix_timestamp_nanos() / 1_000_000).map_err(|_| format!("{s:?} is out of range"));
    }
    let parts: Vec<&str> = s.split('-').collect();
    if let [y, m, d] = parts.as_slice()
        && let (Ok(y), Ok(m), Ok(d)) = (y.parse::<i32>(), m.parse::<u8>(), d.parse::<u8>())
        && let Ok(month) = time::Month::try_from(m)
        && let Ok(date) = time::Date::from_calendar_date(y, month, d)
    {
        return Ok(date.midnight().assume_utc().unix_timestamp().saturating_mul(1000));
    }
    Err(format!(
        "cannot read {s:?} as a time: give ms since the epoch, 2026-11-28T14:00:00Z, 2026-11-28, or a span ago like 24h or 7d"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_in_every_documented_form() {
        let now = 1_764_338_400_000;
        assert_eq!(parse_time("1764338400000", now), Ok(1_764_338_400_000));
        assert_eq!(parse_time("2025-11-28T14:00:00Z", now), Ok(1_764_338_400_000));
        assert_eq!(parse_time("2025-11-28", now), Ok(1_764_288_000_000));
        assert_eq!(parse_time("2h", now), Ok(now - 7_200_000));
        assert_eq!(parse_time("7d", now), Ok(now - 7 * 86_400_000));
        assert!(parse_time("yesterday", now).unwrap_err().contains("24h"));
        // a negative span would reach into the future (an empty file, silently)
        assert!(parse_time("-5h", now).unwrap_err().contains("negative"));
        assert!(parse_time("-5", now).is_err());
    }
}
