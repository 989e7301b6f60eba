//! Record values: the typed form stored and compared, and the JSON and text forms of the wire.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Timelike, Utc};

use crate::Id;

/// A field value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// No value.
    Null,
    /// Checkbox.
    Bool(bool),
    /// Whole number.
    Int(i64),
    /// Double, currency or percent.
    Double(f64),
    /// Text of any text-like type (picklists included; multi-select values joined by `;`).
    Text(String),
    /// Calendar date.
    Date(NaiveDate),
    /// Instant, milliseconds since the Unix epoch (UTC).
    DateTime(i64),
    /// Time of day, milliseconds since midnight.
    Time(u32),
    /// A record id (the field's own Id or a reference).
    Id(Id),
}

impl Value {
    /// True for `Null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The value as JSON, formatted as the REST API formats it.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Double(d) => serde_json::Number::from_f64(*d)
                .map(J::Number)
                .unwrap_or(J::Null),
            Value::Text(s) => J::String(s.clone()),
            Value::Date(d) => J::String(format_date(*d)),
            Value::DateTime(ms) => J::String(format_datetime(*ms)),
            Value::Time(ms) => J::String(format_time(*ms)),
            Value::Id(id) => J::String(id.to_18()),
        }
    }

    /// The value as CSV/XML text (empty for null), as Bulk results format it.
    pub fn to_text(&self) -> String {
        match self {
            Value::Null => String::new(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Double(d) => format_double(*d),
            Value::Text(s) => s.clone(),
            Value::Date(d) => format_date(*d),
            Value::DateTime(ms) => format_datetime_z(*ms),
            Value::Time(ms) => format_time(*ms),
            Value::Id(id) => id.to_18(),
        }
    }
}

/// Formats a double without a needless fraction (`5` → `5`, `5.5` → `5.5`).
pub fn format_double(d: f64) -> String {
    if d.fract() == 0.0 && d.abs() < 1e15 {
        format!("{}", d as i64)
    } else {
        format!("{d}")
    }
}

/// `2013-05-20`.
pub fn format_date(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

/// Writes `YYYY-MM-DDThh:mm:ss.mmm` followed by `zone` (hot path: every record has several).
fn datetime_with(ms: i64, zone: &str) -> String {
    let Some(t) = Utc.timestamp_millis_opt(ms).single() else {
        return String::new();
    };
    let d = t.date_naive();
    let secs = t.num_seconds_from_midnight();
    let mut out = String::with_capacity(28);
    let year = d.year();
    if !(0..=9999).contains(&year) {
        return t.format("%Y-%m-%dT%H:%M:%S%.3f").to_string() + zone;
    }
    push_num(&mut out, year as u32, 4);
    out.push('-');
    push_num(&mut out, d.month(), 2);
    out.push('-');
    push_num(&mut out, d.day(), 2);
    out.push('T');
    push_num(&mut out, secs / 3600, 2);
    out.push(':');
    push_num(&mut out, (secs / 60) % 60, 2);
    out.push(':');
    push_num(&mut out, secs % 60, 2);
    out.push('.');
    push_num(&mut out, ms.rem_euclid(1000) as u32, 3);
    out.push_str(zone);
    out
}

fn push_num(out: &mut String, n: u32, width: u32) {
    let mut div = 10u32.pow(width - 1);
    while div > 0 {
        out.push(char::from(b'0' + ((n / div) % 10) as u8));
        div /= 10;
    }
}

/// `2013-05-20T20:49:32.000+0000`, the REST form.
pub fn format_datetime(ms: i64) -> String {
    datetime_with(ms, "+0000")
}

/// `2013-05-20T20:49:32.000Z`, the Bulk/XML form.
pub fn format_datetime_z(ms: i64) -> String {
    datetime_with(ms, "Z")
}

/// `20:49:32.000Z`.
pub fn format_time(ms: u32) -> String {
    let s = ms / 1000;
    format!(
        "{:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        (s / 60) % 60,
        s % 60,
        ms % 1000
    )
}

/// Parses `YYYY-MM-DD`.
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    let s = s.trim();
    if s.len() != 10 {
        return None;
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

/// Parses an ISO-8601 date-time leniently: `Z`, `+hh:mm`, `+hhmm`, with or without fractions;
/// a value without an offset is UTC. Returns milliseconds since the epoch.
pub fn parse_datetime(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%dT%H:%M:%S%z",
        "%Y-%m-%d %H:%M:%S%.f%z",
        "%Y-%m-%d %H:%M:%S%z",
    ] {
        if let Ok(t) = DateTime::parse_from_str(s, fmt) {
            return Some(t.timestamp_millis());
        }
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t.and_utc().timestamp_millis());
        }
    }
    None
}

/// Parses `hh:mm:ss[.fff][Z]` into milliseconds since midnight.
pub fn parse_time(s: &str) -> Option<u32> {
    let s = s.trim().trim_end_matches('Z');
    for fmt in ["%H:%M:%S%.f", "%H:%M:%S", "%H:%M"] {
        if let Ok(t) = NaiveTime::parse_from_str(s, fmt) {
            return Some(t.num_seconds_from_midnight() * 1000 + t.nanosecond() / 1_000_000);
        }
    }
    None
}

/// Milliseconds since the epoch, now, read straight from the system clock (`Utc::now()`
/// also works out the calendar date, a cost the delivery engine's hot path showed).
pub fn now_millis() -> i64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_millis_is_the_same_clock_as_chrono_in_milliseconds() {
        let before = Utc::now().timestamp_millis();
        let now = now_millis();
        let after = Utc::now().timestamp_millis();
        assert!(
            before <= now && now <= after,
            "{before} <= {now} <= {after}"
        );
    }

    #[test]
    fn datetime_formats() {
        let ms = parse_datetime("2013-05-20T20:49:32.000+0000").unwrap();
        assert_eq!(format_datetime(ms), "2013-05-20T20:49:32.000+0000");
        assert_eq!(format_datetime_z(ms), "2013-05-20T20:49:32.000Z");
        for s in [
            "2013-05-20T20:49:32Z",
            "2013-05-20T20:49:32.000Z",
            "2013-05-20T22:49:32+02:00",
            "2013-05-20T22:49:32+0200",
            "2013-05-20T20:49:32",
        ] {
            assert_eq!(parse_datetime(s), Some(ms), "{s}");
        }
        assert_eq!(parse_datetime("2013-13-20T20:49:32Z"), None);
        assert_eq!(parse_datetime("yesterday"), None);
    }

    #[test]
    fn datetime_formatting_matches_chrono() {
        for ms in [
            0i64,
            1,
            999,
            1_000,
            86_399_999,
            1_700_000_000_123,
            253_402_300_799_999,
            -1,
            -86_400_001,
        ] {
            let expected = Utc
                .timestamp_millis_opt(ms)
                .single()
                .unwrap()
                .format("%Y-%m-%dT%H:%M:%S%.3f+0000")
                .to_string();
            assert_eq!(format_datetime(ms), expected, "{ms}");
        }
    }

    #[test]
    fn date_and_time_formats() {
        assert_eq!(
            parse_date("2020-02-29").map(format_date).as_deref(),
            Some("2020-02-29")
        );
        assert_eq!(parse_date("2021-02-29"), None);
        assert_eq!(
            parse_time("20:49:32.125Z"),
            Some(((20 * 3600 + 49 * 60 + 32) * 1000) + 125)
        );
        assert_eq!(
            format_time(parse_time("07:05:00").unwrap()),
            "07:05:00.000Z"
        );
    }

    #[test]
    fn doubles_print_like_salesforce_csv() {
        assert_eq!(format_double(5.0), "5");
        assert_eq!(format_double(5.25), "5.25");
    }
}
