//! Date literal ranges (`TODAY`, `LAST_N_DAYS:n`, `THIS_FISCAL_QUARTER`, ...) and the small
//! civil-date arithmetic they need (days-from-civil / civil-from-days), without chrono.
//!
//! Every literal denotes a half-open range of calendar days `[start, end)` relative to
//! "today" in the user's time zone (the caller decides what today is). Definitions follow the
//! Salesforce "Date Formats and Date Literals" page:
//! * `LAST_N_DAYS:n` / `LAST_90_DAYS` include today: `[today-n, today+1)`;
//!   `NEXT_N_DAYS:n` / `NEXT_90_DAYS` start tomorrow: `[today+1, today+1+n)`;
//!   `N_DAYS_AGO:n` is the single day `today-n`.
//! * `LAST_N_{WEEKS,MONTHS,QUARTERS,YEARS}:n` are the n whole periods *before* the current
//!   one; `NEXT_N_...:n` the n whole periods *after* it; `N_..._AGO:n` the single period that
//!   started n periods before the current one. Weeks start on the locale's first day of week.
//! * Quarters are calendar quarters; fiscal quarters/years count from the fiscal year start
//!   month (standard fiscal years only; custom fiscal years are not modelled).
//!
//! Arithmetic is done on `i64` day numbers; results whose year does not fit `i32` saturate.

use crate::ast::DateLiteral;

/// A day of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Weekday {
    /// Sunday (en_US first day of week).
    Sunday,
    /// Monday.
    Monday,
    /// Tuesday.
    Tuesday,
    /// Wednesday.
    Wednesday,
    /// Thursday.
    Thursday,
    /// Friday.
    Friday,
    /// Saturday.
    Saturday,
}

impl Weekday {
    /// 0 = Sunday ... 6 = Saturday.
    pub fn number_from_sunday(self) -> i64 {
        match self {
            Weekday::Sunday => 0,
            Weekday::Monday => 1,
            Weekday::Tuesday => 2,
            Weekday::Wednesday => 3,
            Weekday::Thursday => 4,
            Weekday::Friday => 5,
            Weekday::Saturday => 6,
        }
    }

    fn from_number_from_sunday(n: i64) -> Weekday {
        match n.rem_euclid(7) {
            0 => Weekday::Sunday,
            1 => Weekday::Monday,
            2 => Weekday::Tuesday,
            3 => Weekday::Wednesday,
            4 => Weekday::Thursday,
            5 => Weekday::Friday,
            _ => Weekday::Saturday,
        }
    }
}

/// Locale / org settings that shape date literal ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CalendarSettings {
    /// First day of the week (en_US: Sunday).
    pub first_day_of_week: Weekday,
    /// Month (1-12) in which the fiscal year starts (default January).
    pub fiscal_year_start_month: u32,
}

impl Default for CalendarSettings {
    fn default() -> Self {
        CalendarSettings {
            first_day_of_week: Weekday::Sunday,
            fiscal_year_start_month: 1,
        }
    }
}

/// Days since 1970-01-01 of the proleptic Gregorian date `y-m-d` (month/day not validated).
pub fn days_from_civil(year: i32, month: u32, day: u32) -> i64 {
    days_from_civil_i64(i64::from(year), month, day)
}

fn days_from_civil_i64(year: i64, month: u32, day: u32) -> i64 {
    let month = i64::from(month.clamp(1, 12));
    let day = i64::from(day);
    // shift the year so that it starts in March; the leap day is then the last day
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y.rem_euclid(400);
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date `days` days after 1970-01-01 as `(year, month, day)`; the year saturates to `i32`.
pub fn civil_from_days(days: i64) -> (i32, u32, u32) {
    let (y, m, d) = civil_from_days_i64(days);
    let y = y.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
    (y, m, d)
}

fn civil_from_days_i64(days: i64) -> (i64, u32, u32) {
    let z = days.saturating_add(719_468);
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era.saturating_mul(400) + i64::from(month <= 2);
    (year, month, day)
}

/// Day of the week of `(year, month, day)`.
pub fn weekday(date: (i32, u32, u32)) -> Weekday {
    // 1970-01-01 was a Thursday
    Weekday::from_number_from_sunday(days_from_civil(date.0, date.1, date.2) + 4)
}

/// Number of the first day of the month with index `year*12 + (month-1)`.
fn month_start(month_index: i64) -> i64 {
    days_from_civil_i64(
        month_index.div_euclid(12),
        (month_index.rem_euclid(12) + 1) as u32,
        1,
    )
}

/// `[start, end)` of `lit` for `today`, with en_US weeks (Sunday first) and a January fiscal year.
pub fn date_literal_range(
    lit: &DateLiteral,
    today: (i32, u32, u32),
) -> ((i32, u32, u32), (i32, u32, u32)) {
    date_literal_range_with(lit, today, &CalendarSettings::default())
}

/// `[start, end)` of `lit` for `today` under explicit locale / fiscal settings.
///
/// An invalid `today` is clamped to a valid date first (month 1-12, day within the month);
/// an invalid fiscal start month is clamped to 1-12.
pub fn date_literal_range_with(
    lit: &DateLiteral,
    today: (i32, u32, u32),
    settings: &CalendarSettings,
) -> ((i32, u32, u32), (i32, u32, u32)) {
    let (start, end) = range_days(lit, today, settings);
    (civil_from_days(start), civil_from_days(end))
}

/// The same range as day numbers since 1970-01-01.
pub fn date_literal_range_days(
    lit: &DateLiteral,
    today: (i32, u32, u32),
    settings: &CalendarSettings,
) -> (i64, i64) {
    range_days(lit, today, settings)
}

fn range_days(
    lit: &DateLiteral,
    today: (i32, u32, u32),
    settings: &CalendarSettings,
) -> (i64, i64) {
    use DateLiteral::*;
    let year = today.0;
    let month = today.1.clamp(1, 12);
    let day = today.2.clamp(1, crate::lexer::days_in_month(year, month));
    let t = days_from_civil(year, month, day);

    // week: most recent first-day-of-week on or before today
    let dow = (t + 4).rem_euclid(7);
    let w = t - (dow - settings.first_day_of_week.number_from_sunday()).rem_euclid(7);

    // months as a running index
    let m = i64::from(year) * 12 + i64::from(month - 1);
    let q = m - i64::from((month - 1) % 3);
    let y = i64::from(year) * 12;
    let fiscal_start = i64::from(settings.fiscal_year_start_month.clamp(1, 12) - 1);
    let fy = m - (m - fiscal_start).rem_euclid(12);
    let fq = fy + 3 * ((m - fy) / 3);

    let months = |from: i64, count: i64| (month_start(from), month_start(from + count));
    let days = |from: i64, count: i64| (from, from + count);

    match *lit {
        Yesterday => days(t - 1, 1),
        Today => days(t, 1),
        Tomorrow => days(t + 1, 1),
        LastWeek => days(w - 7, 7),
        ThisWeek => days(w, 7),
        NextWeek => days(w + 7, 7),
        LastMonth => months(m - 1, 1),
        ThisMonth => months(m, 1),
        NextMonth => months(m + 1, 1),
        Last90Days => (t - 90, t + 1),
        Next90Days => days(t + 1, 90),
        ThisQuarter => months(q, 3),
        LastQuarter => months(q - 3, 3),
        NextQuarter => months(q + 3, 3),
        ThisYear => months(y, 12),
        LastYear => months(y - 12, 12),
        NextYear => months(y + 12, 12),
        ThisFiscalQuarter => months(fq, 3),
        LastFiscalQuarter => months(fq - 3, 3),
        NextFiscalQuarter => months(fq + 3, 3),
        ThisFiscalYear => months(fy, 12),
        LastFiscalYear => months(fy - 12, 12),
        NextFiscalYear => months(fy + 12, 12),
        LastNDays(n) => (t - i64::from(n), t + 1),
        NextNDays(n) => days(t + 1, i64::from(n)),
        NDaysAgo(n) => days(t - i64::from(n), 1),
        LastNWeeks(n) => (w - 7 * i64::from(n), w),
        NextNWeeks(n) => days(w + 7, 7 * i64::from(n)),
        NWeeksAgo(n) => days(w - 7 * i64::from(n), 7),
        LastNMonths(n) => (month_start(m - i64::from(n)), month_start(m)),
        NextNMonths(n) => months(m + 1, i64::from(n)),
        NMonthsAgo(n) => months(m - i64::from(n), 1),
        LastNQuarters(n) => (month_start(q - 3 * i64::from(n)), month_start(q)),
        NextNQuarters(n) => months(q + 3, 3 * i64::from(n)),
        NQuartersAgo(n) => months(q - 3 * i64::from(n), 3),
        LastNYears(n) => (month_start(y - 12 * i64::from(n)), month_start(y)),
        NextNYears(n) => months(y + 12, 12 * i64::from(n)),
        NYearsAgo(n) => months(y - 12 * i64::from(n), 12),
        LastNFiscalQuarters(n) => (month_start(fq - 3 * i64::from(n)), month_start(fq)),
        NextNFiscalQuarters(n) => months(fq + 3, 3 * i64::from(n)),
        NFiscalQuartersAgo(n) => months(fq - 3 * i64::from(n), 3),
        LastNFiscalYears(n) => (month_start(fy - 12 * i64::from(n)), month_start(fy)),
        NextNFiscalYears(n) => months(fy + 12, 12 * i64::from(n)),
        NFiscalYearsAgo(n) => months(fy - 12 * i64::from(n), 12),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DateLiteral::*;

    type Ymd = (i32, u32, u32);

    /// Wednesday 2024-05-15.
    const TODAY: Ymd = (2024, 5, 15);

    fn check(lit: DateLiteral, today: Ymd, start: Ymd, end: Ymd) {
        assert_eq!(
            date_literal_range(&lit, today),
            (start, end),
            "{lit:?} on {today:?}"
        );
    }

    fn check_with(lit: DateLiteral, today: Ymd, s: CalendarSettings, start: Ymd, end: Ymd) {
        assert_eq!(
            date_literal_range_with(&lit, today, &s),
            (start, end),
            "{lit:?} on {today:?} {s:?}"
        );
    }

    #[test]
    fn civil_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        let mut prev = days_from_civil(1599, 12, 31);
        for y in [1600, 1700, 1899, 1900, 2000, 2023, 2024, 2100, 2400] {
            for m in 1..=12 {
                for d in 1..=crate::lexer::days_in_month(y, m) {
                    let n = days_from_civil(y, m, d);
                    assert_eq!(civil_from_days(n), (y, m, d));
                    if (m, d) != (1, 1) {
                        assert_eq!(n, prev + 1, "{y}-{m}-{d}");
                    }
                    prev = n;
                }
            }
        }
        for n in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(n);
            assert_eq!(days_from_civil(y, m, d), n);
        }
    }

    #[test]
    fn weekdays() {
        assert_eq!(weekday((1970, 1, 1)), Weekday::Thursday);
        assert_eq!(weekday(TODAY), Weekday::Wednesday);
        assert_eq!(weekday((2024, 1, 1)), Weekday::Monday);
        assert_eq!(weekday((2000, 2, 29)), Weekday::Tuesday);
        assert_eq!(weekday((1969, 12, 28)), Weekday::Sunday);
    }

    #[test]
    fn days() {
        check(Yesterday, TODAY, (2024, 5, 14), (2024, 5, 15));
        check(Today, TODAY, (2024, 5, 15), (2024, 5, 16));
        check(Tomorrow, TODAY, (2024, 5, 16), (2024, 5, 17));
        check(Yesterday, (2024, 3, 1), (2024, 2, 29), (2024, 3, 1));
        check(Tomorrow, (2023, 12, 31), (2024, 1, 1), (2024, 1, 2));
        check(LastNDays(1), TODAY, (2024, 5, 14), (2024, 5, 16));
        check(LastNDays(0), TODAY, (2024, 5, 15), (2024, 5, 16));
        check(LastNDays(30), TODAY, (2024, 4, 15), (2024, 5, 16));
        check(Last90Days, TODAY, (2024, 2, 15), (2024, 5, 16));
        assert_eq!(
            date_literal_range(&Last90Days, TODAY),
            date_literal_range(&LastNDays(90), TODAY)
        );
        check(NextNDays(1), TODAY, (2024, 5, 16), (2024, 5, 17));
        check(NextNDays(7), TODAY, (2024, 5, 16), (2024, 5, 23));
        check(Next90Days, TODAY, (2024, 5, 16), (2024, 8, 14));
        assert_eq!(
            date_literal_range(&Next90Days, TODAY),
            date_literal_range(&NextNDays(90), TODAY)
        );
        check(NDaysAgo(3), TODAY, (2024, 5, 12), (2024, 5, 13));
        check(NDaysAgo(0), TODAY, (2024, 5, 15), (2024, 5, 16));
        // 91 days in LAST_90_DAYS
        let (s, e) = date_literal_range_days(&Last90Days, TODAY, &CalendarSettings::default());
        assert_eq!(e - s, 91);
    }

    #[test]
    fn weeks_sunday_first() {
        check(ThisWeek, TODAY, (2024, 5, 12), (2024, 5, 19));
        check(LastWeek, TODAY, (2024, 5, 5), (2024, 5, 12));
        check(NextWeek, TODAY, (2024, 5, 19), (2024, 5, 26));
        check(LastNWeeks(2), TODAY, (2024, 4, 28), (2024, 5, 12));
        check(NextNWeeks(2), TODAY, (2024, 5, 19), (2024, 6, 2));
        check(NWeeksAgo(2), TODAY, (2024, 4, 28), (2024, 5, 5));
        check(NWeeksAgo(0), TODAY, (2024, 5, 12), (2024, 5, 19));
        // today is the first day of the week / the last day of the week
        check(ThisWeek, (2024, 5, 12), (2024, 5, 12), (2024, 5, 19));
        check(ThisWeek, (2024, 5, 18), (2024, 5, 12), (2024, 5, 19));
        // across a year boundary
        check(ThisWeek, (2024, 1, 2), (2023, 12, 31), (2024, 1, 7));
        check(LastWeek, (2024, 1, 2), (2023, 12, 24), (2023, 12, 31));
    }

    #[test]
    fn weeks_monday_first() {
        let s = CalendarSettings {
            first_day_of_week: Weekday::Monday,
            fiscal_year_start_month: 1,
        };
        check_with(ThisWeek, TODAY, s, (2024, 5, 13), (2024, 5, 20));
        check_with(ThisWeek, (2024, 5, 12), s, (2024, 5, 6), (2024, 5, 13));
        check_with(LastWeek, TODAY, s, (2024, 5, 6), (2024, 5, 13));
        check_with(NextNWeeks(1), TODAY, s, (2024, 5, 20), (2024, 5, 27));
    }

    #[test]
    fn months() {
        check(ThisMonth, TODAY, (2024, 5, 1), (2024, 6, 1));
        check(LastMonth, TODAY, (2024, 4, 1), (2024, 5, 1));
        check(NextMonth, TODAY, (2024, 6, 1), (2024, 7, 1));
        check(LastMonth, (2024, 1, 31), (2023, 12, 1), (2024, 1, 1));
        check(NextMonth, (2024, 12, 31), (2025, 1, 1), (2025, 2, 1));
        check(LastNMonths(3), TODAY, (2024, 2, 1), (2024, 5, 1));
        check(LastNMonths(12), TODAY, (2023, 5, 1), (2024, 5, 1));
        check(NextNMonths(2), TODAY, (2024, 6, 1), (2024, 8, 1));
        check(NMonthsAgo(5), TODAY, (2023, 12, 1), (2024, 1, 1));
        check(NMonthsAgo(0), TODAY, (2024, 5, 1), (2024, 6, 1));
    }

    #[test]
    fn quarters() {
        check(ThisQuarter, TODAY, (2024, 4, 1), (2024, 7, 1));
        check(LastQuarter, TODAY, (2024, 1, 1), (2024, 4, 1));
        check(NextQuarter, TODAY, (2024, 7, 1), (2024, 10, 1));
        check(LastQuarter, (2024, 2, 29), (2023, 10, 1), (2024, 1, 1));
        check(NextQuarter, (2024, 12, 1), (2025, 1, 1), (2025, 4, 1));
        check(LastNQuarters(2), TODAY, (2023, 10, 1), (2024, 4, 1));
        check(NextNQuarters(2), TODAY, (2024, 7, 1), (2025, 1, 1));
        check(NQuartersAgo(1), TODAY, (2024, 1, 1), (2024, 4, 1));
        check(NQuartersAgo(4), TODAY, (2023, 4, 1), (2023, 7, 1));
    }

    #[test]
    fn years() {
        check(ThisYear, TODAY, (2024, 1, 1), (2025, 1, 1));
        check(LastYear, TODAY, (2023, 1, 1), (2024, 1, 1));
        check(NextYear, TODAY, (2025, 1, 1), (2026, 1, 1));
        check(LastNYears(2), TODAY, (2022, 1, 1), (2024, 1, 1));
        check(NextNYears(3), TODAY, (2025, 1, 1), (2028, 1, 1));
        check(NYearsAgo(10), TODAY, (2014, 1, 1), (2015, 1, 1));
    }

    #[test]
    fn fiscal_defaults_equal_calendar() {
        let pairs = [
            (ThisFiscalQuarter, ThisQuarter),
            (LastFiscalQuarter, LastQuarter),
            (NextFiscalQuarter, NextQuarter),
            (ThisFiscalYear, ThisYear),
            (LastFiscalYear, LastYear),
            (NextFiscalYear, NextYear),
            (LastNFiscalQuarters(3), LastNQuarters(3)),
            (NextNFiscalQuarters(3), NextNQuarters(3)),
            (NFiscalQuartersAgo(3), NQuartersAgo(3)),
            (LastNFiscalYears(2), LastNYears(2)),
            (NextNFiscalYears(2), NextNYears(2)),
            (NFiscalYearsAgo(2), NYearsAgo(2)),
        ];
        for today in [
            TODAY,
            (2024, 1, 1),
            (2023, 12, 31),
            (2024, 3, 31),
            (2024, 10, 1),
        ] {
            for (f, c) in pairs {
                assert_eq!(
                    date_literal_range(&f, today),
                    date_literal_range(&c, today),
                    "{f:?} {today:?}"
                );
            }
        }
        check(ThisFiscalQuarter, TODAY, (2024, 4, 1), (2024, 7, 1));
        check(LastNFiscalYears(1), TODAY, (2023, 1, 1), (2024, 1, 1));
    }

    #[test]
    fn fiscal_april_start() {
        let s = CalendarSettings {
            first_day_of_week: Weekday::Sunday,
            fiscal_year_start_month: 4,
        };
        check_with(ThisFiscalYear, TODAY, s, (2024, 4, 1), (2025, 4, 1));
        check_with(ThisFiscalYear, (2024, 2, 10), s, (2023, 4, 1), (2024, 4, 1));
        check_with(LastFiscalYear, (2024, 2, 10), s, (2022, 4, 1), (2023, 4, 1));
        check_with(NextFiscalYear, TODAY, s, (2025, 4, 1), (2026, 4, 1));
        check_with(ThisFiscalQuarter, TODAY, s, (2024, 4, 1), (2024, 7, 1));
        check_with(
            ThisFiscalQuarter,
            (2024, 2, 10),
            s,
            (2024, 1, 1),
            (2024, 4, 1),
        );
        check_with(LastFiscalQuarter, TODAY, s, (2024, 1, 1), (2024, 4, 1));
        check_with(NextFiscalQuarter, TODAY, s, (2024, 7, 1), (2024, 10, 1));
        check_with(
            LastNFiscalQuarters(2),
            TODAY,
            s,
            (2023, 10, 1),
            (2024, 4, 1),
        );
        check_with(NextNFiscalQuarters(2), TODAY, s, (2024, 7, 1), (2025, 1, 1));
        check_with(NFiscalQuartersAgo(1), TODAY, s, (2024, 1, 1), (2024, 4, 1));
        check_with(LastNFiscalYears(2), TODAY, s, (2022, 4, 1), (2024, 4, 1));
        check_with(NextNFiscalYears(1), TODAY, s, (2025, 4, 1), (2026, 4, 1));
        check_with(NFiscalYearsAgo(1), TODAY, s, (2023, 4, 1), (2024, 4, 1));
    }

    #[test]
    fn fiscal_november_start_quarters_straddle_years() {
        let s = CalendarSettings {
            first_day_of_week: Weekday::Sunday,
            fiscal_year_start_month: 11,
        };
        check_with(ThisFiscalYear, TODAY, s, (2023, 11, 1), (2024, 11, 1));
        check_with(ThisFiscalQuarter, TODAY, s, (2024, 5, 1), (2024, 8, 1));
        check_with(
            ThisFiscalQuarter,
            (2024, 1, 5),
            s,
            (2023, 11, 1),
            (2024, 2, 1),
        );
        check_with(
            ThisFiscalYear,
            (2024, 11, 1),
            s,
            (2024, 11, 1),
            (2025, 11, 1),
        );
    }

    #[test]
    fn hostile_inputs_do_not_panic() {
        let all_n = |n: u32| {
            vec![
                LastNDays(n),
                NextNDays(n),
                NDaysAgo(n),
                LastNWeeks(n),
                NextNWeeks(n),
                NWeeksAgo(n),
                LastNMonths(n),
                NextNMonths(n),
                NMonthsAgo(n),
                LastNQuarters(n),
                NextNQuarters(n),
                NQuartersAgo(n),
                LastNYears(n),
                NextNYears(n),
                NYearsAgo(n),
                LastNFiscalQuarters(n),
                NextNFiscalQuarters(n),
                NFiscalQuartersAgo(n),
                LastNFiscalYears(n),
                NextNFiscalYears(n),
                NFiscalYearsAgo(n),
            ]
        };
        let weird = CalendarSettings {
            first_day_of_week: Weekday::Saturday,
            fiscal_year_start_month: 99,
        };
        for today in [
            (i32::MAX, 12, 31),
            (i32::MIN, 1, 1),
            (2024, 0, 0),
            (2024, 13, 40),
            (0, 2, 29),
        ] {
            for lit in all_n(u32::MAX).into_iter().chain(all_n(0)) {
                let _ = date_literal_range(&lit, today);
                let _ = date_literal_range_with(&lit, today, &weird);
            }
        }
        // invalid `today` is clamped
        check(Today, (2023, 2, 30), (2023, 2, 28), (2023, 3, 1));
    }

    #[test]
    fn ranges_are_ordered_for_many_days() {
        let all = [
            Yesterday,
            Today,
            Tomorrow,
            LastWeek,
            ThisWeek,
            NextWeek,
            LastMonth,
            ThisMonth,
            NextMonth,
            Last90Days,
            Next90Days,
            ThisQuarter,
            LastQuarter,
            NextQuarter,
            ThisYear,
            LastYear,
            NextYear,
            ThisFiscalQuarter,
            LastFiscalQuarter,
            NextFiscalQuarter,
            ThisFiscalYear,
            LastFiscalYear,
            NextFiscalYear,
            LastNDays(5),
            NextNDays(5),
            NDaysAgo(5),
            LastNWeeks(5),
            NextNWeeks(5),
            NWeeksAgo(5),
            LastNMonths(5),
            NextNMonths(5),
            NMonthsAgo(5),
            LastNQuarters(5),
            NextNQuarters(5),
            NQuartersAgo(5),
            LastNYears(5),
            NextNYears(5),
            NYearsAgo(5),
        ];
        let start = days_from_civil(2023, 1, 1);
        for d in start..start + 800 {
            let today = civil_from_days(d);
            for lit in all {
                let (s, e) = date_literal_range_days(&lit, today, &CalendarSettings::default());
                assert!(s < e, "{lit:?} {today:?}");
                let contains_today = s <= d && d < e;
                let expected = matches!(
                    lit,
                    Today
                        | ThisWeek
                        | ThisMonth
                        | Last90Days
                        | ThisQuarter
                        | ThisYear
                        | ThisFiscalQuarter
                        | ThisFiscalYear
                        | LastNDays(_)
                );
                assert_eq!(contains_today, expected, "{lit:?} {today:?}");
            }
        }
    }
}
