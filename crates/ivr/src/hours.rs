//! Business hours: weekly opening times and holidays in a named time zone.

use jiff::Zoned;
use jiff::civil::Date;
use jiff::tz::TimeZone;

use crate::model::{HoursStep, Weekday};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HoursError {
    #[error("unknown time zone `{0}` (use an IANA name such as Europe/Istanbul)")]
    TimeZone(String),
    #[error("invalid time `{0}`: expected HH:MM between 00:00 and 24:00")]
    Time(String),
    #[error("invalid date `{0}`: expected YYYY-MM-DD")]
    Date(String),
    #[error("opening hours from {from} to {to} are empty: `to` must be after `from`")]
    Empty { from: String, to: String },
}

/// Minutes since midnight for `HH:MM` (24:00 allowed as the end of the day).
pub fn parse_clock(text: &str) -> Result<u32, HoursError> {
    let err = || HoursError::Time(text.to_owned());
    let (h, m) = text.split_once(':').ok_or_else(err)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(err());
    }
    let h: u32 = h.parse().map_err(|_| err())?;
    let m: u32 = m.parse().map_err(|_| err())?;
    if m > 59 || h > 24 || (h == 24 && m != 0) {
        return Err(err());
    }
    Ok(h * 60 + m)
}

pub fn parse_date(text: &str) -> Result<Date, HoursError> {
    text.parse::<Date>()
        .map_err(|_| HoursError::Date(text.to_owned()))
}

/// A closed day: one date (`2026-10-29`) or the same day every year (`10-29`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClosedDay {
    Once(Date),
    Yearly { month: i8, day: i8 },
}

impl ClosedDay {
    pub fn parse(text: &str) -> Result<ClosedDay, HoursError> {
        let err = || HoursError::Date(text.to_owned());
        if text.len() == 5 {
            let (m, d) = text.split_once('-').ok_or_else(err)?;
            let month: i8 = m.parse().map_err(|_| err())?;
            let day: i8 = d.parse().map_err(|_| err())?;
            // 2024 is a leap year, so 02-29 is accepted.
            Date::new(2024, month, day).map_err(|_| err())?;
            return Ok(ClosedDay::Yearly { month, day });
        }
        parse_date(text).map(ClosedDay::Once)
    }

    pub fn is(&self, date: Date) -> bool {
        match *self {
            ClosedDay::Once(d) => d == date,
            ClosedDay::Yearly { month, day } => date.month() == month && date.day() == day,
        }
    }
}

pub fn time_zone(name: &str) -> Result<TimeZone, HoursError> {
    TimeZone::get(name).map_err(|_| HoursError::TimeZone(name.to_owned()))
}

pub fn weekday_of(zoned: &Zoned) -> Weekday {
    match zoned.weekday() {
        jiff::civil::Weekday::Monday => Weekday::Mon,
        jiff::civil::Weekday::Tuesday => Weekday::Tue,
        jiff::civil::Weekday::Wednesday => Weekday::Wed,
        jiff::civil::Weekday::Thursday => Weekday::Thu,
        jiff::civil::Weekday::Friday => Weekday::Fri,
        jiff::civil::Weekday::Saturday => Weekday::Sat,
        jiff::civil::Weekday::Sunday => Weekday::Sun,
    }
}

/// Every problem in an `hours` step's values, for the validator.
pub fn check(step: &HoursStep) -> Vec<(crate::Position, HoursError)> {
    let mut problems = Vec::new();
    if let Err(e) = time_zone(&step.timezone) {
        problems.push((step.timezone.position, e));
    }
    for open in &step.weekly {
        let from = parse_clock(&open.from).map_err(|e| problems.push((open.from.position, e)));
        let to = parse_clock(&open.to).map_err(|e| problems.push((open.to.position, e)));
        if let (Ok(f), Ok(t)) = (from, to)
            && t <= f
        {
            problems.push((
                open.to.position,
                HoursError::Empty {
                    from: open.from.value.clone(),
                    to: open.to.value.clone(),
                },
            ));
        }
    }
    for holiday in &step.closed {
        if let Err(e) = ClosedDay::parse(&holiday.date) {
            problems.push((holiday.date.position, e));
        }
    }
    problems
}

/// Is the line open at `at`? Values that do not parse count as closed (the validator reports
/// them before a flow can be loaded).
pub fn is_open(step: &HoursStep, at: &Zoned) -> Result<bool, HoursError> {
    let tz = time_zone(&step.timezone)?;
    let local = at.with_time_zone(tz);
    let date = local.date();
    for holiday in &step.closed {
        if ClosedDay::parse(&holiday.date)?.is(date) {
            return Ok(false);
        }
    }
    let day = weekday_of(&local);
    let minute = u32::try_from(local.time().hour()).unwrap_or(0) * 60
        + u32::try_from(local.time().minute()).unwrap_or(0);
    for open in &step.weekly {
        if !open.days.contains(&day) {
            continue;
        }
        let from = parse_clock(&open.from)?;
        let to = parse_clock(&open.to)?;
        if from <= minute && minute < to {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::located::Located;
    use crate::model::{Holiday, OpeningHours};

    fn step() -> HoursStep {
        HoursStep {
            timezone: Located::synthetic("Europe/Istanbul".into()),
            weekly: vec![OpeningHours {
                days: vec![
                    Weekday::Mon,
                    Weekday::Tue,
                    Weekday::Wed,
                    Weekday::Thu,
                    Weekday::Fri,
                ],
                from: Located::synthetic("09:00".into()),
                to: Located::synthetic("18:00".into()),
            }],
            closed: vec![
                Holiday {
                    date: Located::synthetic("2026-10-29".into()),
                    name: None,
                },
                Holiday {
                    date: Located::synthetic("04-23".into()),
                    name: Some("National Sovereignty and Children's Day".into()),
                },
            ],
            on_open: Located::synthetic("a".into()),
            on_closed: Located::synthetic("b".into()),
        }
    }

    fn at(text: &str) -> Zoned {
        text.parse().expect("test time")
    }

    #[test]
    fn opening_hours_follow_the_time_zone() {
        let s = step();
        // 2026-11-23 is a Monday; Istanbul is UTC+3.
        assert_eq!(
            is_open(&s, &at("2026-11-23T09:00:00+03:00[Europe/Istanbul]")),
            Ok(true)
        );
        assert_eq!(
            is_open(&s, &at("2026-11-23T08:59:00+03:00[Europe/Istanbul]")),
            Ok(false)
        );
        assert_eq!(
            is_open(&s, &at("2026-11-23T18:00:00+03:00[Europe/Istanbul]")),
            Ok(false)
        );
        // 06:30 UTC is 09:30 in Istanbul.
        assert_eq!(is_open(&s, &at("2026-11-23T06:30:00+00:00[UTC]")), Ok(true));
        // Saturday.
        assert_eq!(
            is_open(&s, &at("2026-11-28T12:00:00+03:00[Europe/Istanbul]")),
            Ok(false)
        );
        // Holiday on a Thursday.
        assert_eq!(
            is_open(&s, &at("2026-10-29T12:00:00+03:00[Europe/Istanbul]")),
            Ok(false)
        );
    }

    #[test]
    fn yearly_holidays_close_every_year() {
        let s = step();
        // 2026-04-23 is a Thursday, 2027-04-23 a Friday.
        assert_eq!(
            is_open(&s, &at("2026-04-23T12:00:00+03:00[Europe/Istanbul]")),
            Ok(false)
        );
        assert_eq!(
            is_open(&s, &at("2027-04-23T12:00:00+03:00[Europe/Istanbul]")),
            Ok(false)
        );
        assert_eq!(
            is_open(&s, &at("2027-04-22T12:00:00+03:00[Europe/Istanbul]")),
            Ok(true)
        );
        assert!(ClosedDay::parse("02-29").is_ok());
        assert!(ClosedDay::parse("02-30").is_err());
        assert!(ClosedDay::parse("13-01").is_err());
    }

    #[test]
    fn bad_values_are_reported() {
        assert_eq!(parse_clock("24:00"), Ok(1440));
        assert!(parse_clock("24:01").is_err());
        assert!(parse_clock("9:00").is_err());
        let mut s = step();
        s.timezone = Located::synthetic("Mars/Olympus".into());
        s.closed[0].date = Located::synthetic("2026-13-01".into());
        s.weekly[0].to = Located::synthetic("08:00".into());
        let problems: Vec<String> = check(&s).into_iter().map(|(_, e)| e.to_string()).collect();
        assert_eq!(problems.len(), 3, "{problems:?}");
    }
}
