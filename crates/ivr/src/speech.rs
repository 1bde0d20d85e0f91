//! Speaking numbers, digits, amounts and durations from recorded fragments (prompts named
//! `num_0` … `num_19`, `num_20` … `num_90`, `num_hundred`, `num_thousand`, `num_million`,
//! `currency_lira`, `currency_kurus`, `unit_hour(s)`, `unit_minute(s)`, `unit_second(s)`).

use crate::model::SayKind;

/// The largest number `say_number` speaks.
pub const MAX_NUMBER: u64 = 999_999_999;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpeechError {
    #[error("cannot speak `{0}` as a number (0 to 999999999)")]
    Number(String),
    #[error("cannot speak `{0}` as digits")]
    Digits(String),
    #[error("cannot speak `{0}` as an amount (e.g. 12.50)")]
    Amount(String),
    #[error("cannot speak `{0}` as a duration in seconds")]
    Duration(String),
}

/// Whether a language's grammar drops "one" before hundred/thousand (Turkish: "yüz", "bin").
fn drops_leading_one(language: &str) -> bool {
    language == "tr"
}

/// Whether units take a plural form (English: minute/minutes; Turkish: dakika for both).
fn has_plural_units(language: &str) -> bool {
    language != "tr"
}

/// The fragment names that speak `value` as `kind` in `language`.
pub fn fragments(kind: SayKind, value: &str, language: &str) -> Result<Vec<String>, SpeechError> {
    let value = value.trim();
    match kind {
        SayKind::Number => {
            let n = parse_number(value).ok_or_else(|| SpeechError::Number(value.to_owned()))?;
            Ok(number(n, language))
        }
        SayKind::Digits => {
            if value.is_empty() || value.len() > 64 || !value.chars().all(|c| c.is_ascii_digit()) {
                return Err(SpeechError::Digits(value.to_owned()));
            }
            Ok(value.chars().map(|c| format!("num_{c}")).collect())
        }
        SayKind::Amount => {
            amount(value, language).ok_or_else(|| SpeechError::Amount(value.to_owned()))
        }
        SayKind::Duration => {
            let secs =
                parse_number(value).ok_or_else(|| SpeechError::Duration(value.to_owned()))?;
            Ok(duration(secs, language))
        }
    }
}

fn parse_number(value: &str) -> Option<u64> {
    if value.is_empty() || value.len() > 9 || !value.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    value.parse().ok().filter(|n| *n <= MAX_NUMBER)
}

/// 0 ≤ n ≤ MAX_NUMBER as fragment names.
pub fn number(n: u64, language: &str) -> Vec<String> {
    if n == 0 {
        return vec!["num_0".to_owned()];
    }
    let mut out = Vec::new();
    let millions = n / 1_000_000;
    let thousands = (n / 1000) % 1000;
    let rest = n % 1000;
    if millions > 0 {
        below_thousand(millions, language, &mut out);
        out.push("num_million".to_owned());
    }
    if thousands > 0 {
        if !(thousands == 1 && drops_leading_one(language)) {
            below_thousand(thousands, language, &mut out);
        }
        out.push("num_thousand".to_owned());
    }
    if rest > 0 {
        below_thousand(rest, language, &mut out);
    }
    out
}

fn below_thousand(n: u64, language: &str, out: &mut Vec<String>) {
    let hundreds = n / 100;
    let rest = n % 100;
    if hundreds > 0 {
        if !(hundreds == 1 && drops_leading_one(language)) {
            out.push(format!("num_{hundreds}"));
        }
        out.push("num_hundred".to_owned());
    }
    if rest >= 20 {
        out.push(format!("num_{}", rest / 10 * 10));
        if !rest.is_multiple_of(10) {
            out.push(format!("num_{}", rest % 10));
        }
    } else if rest > 0 {
        out.push(format!("num_{rest}"));
    }
}

fn amount(value: &str, language: &str) -> Option<Vec<String>> {
    let (whole, fraction) = match value.split_once(['.', ',']) {
        Some((w, f)) => (w, f),
        None => (value, ""),
    };
    let lira = parse_number(if whole.is_empty() { "0" } else { whole })?;
    let kurus = match fraction.len() {
        0 => 0,
        1 => parse_number(fraction)? * 10,
        2 => parse_number(fraction)?,
        _ => return None,
    };
    let mut out = Vec::new();
    if lira > 0 || kurus == 0 {
        out.extend(number(lira, language));
        out.push("currency_lira".to_owned());
    }
    if kurus > 0 {
        out.extend(number(kurus, language));
        out.push("currency_kurus".to_owned());
    }
    Some(out)
}

fn duration(secs: u64, language: &str) -> Vec<String> {
    let parts = [
        (secs / 3600, "hour"),
        ((secs / 60) % 60, "minute"),
        (secs % 60, "second"),
    ];
    let mut out = Vec::new();
    for (amount, unit) in parts {
        if amount == 0 {
            continue;
        }
        out.extend(number(amount, language));
        out.push(unit_name(unit, amount, language));
    }
    if out.is_empty() {
        out.push("num_0".to_owned());
        out.push(unit_name("second", 0, language));
    }
    out
}

fn unit_name(unit: &str, amount: u64, language: &str) -> String {
    if amount != 1 && has_plural_units(language) {
        format!("unit_{unit}s")
    } else {
        format!("unit_{unit}")
    }
}

/// Every fragment a kind of `say` may need, for checking that the prompts exist.
pub fn all_fragments(kind: SayKind) -> Vec<String> {
    let mut names: Vec<String> = (0..20).map(|n| format!("num_{n}")).collect();
    if kind == SayKind::Digits {
        names.truncate(10);
        return names;
    }
    names.extend((2..10).map(|t| format!("num_{}", t * 10)));
    names.extend(["num_hundred", "num_thousand", "num_million"].map(String::from));
    match kind {
        SayKind::Amount => names.extend(["currency_lira", "currency_kurus"].map(String::from)),
        SayKind::Duration => names.extend(
            [
                "unit_hour",
                "unit_hours",
                "unit_minute",
                "unit_minutes",
                "unit_second",
                "unit_seconds",
            ]
            .map(String::from),
        ),
        SayKind::Number | SayKind::Digits => {}
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn say(kind: SayKind, v: &str, lang: &str) -> String {
        fragments(kind, v, lang)
            .map(|f| f.join(" "))
            .unwrap_or_else(|e| e.to_string())
    }

    #[test]
    fn turkish_numbers_drop_one_before_hundred_and_thousand() {
        assert_eq!(say(SayKind::Number, "0", "tr"), "num_0");
        assert_eq!(say(SayKind::Number, "15", "tr"), "num_15");
        assert_eq!(say(SayKind::Number, "100", "tr"), "num_hundred");
        assert_eq!(
            say(SayKind::Number, "1999", "tr"),
            "num_thousand num_9 num_hundred num_90 num_9"
        );
        assert_eq!(
            say(SayKind::Number, "2024", "tr"),
            "num_2 num_thousand num_20 num_4"
        );
        assert_eq!(say(SayKind::Number, "1000000", "tr"), "num_1 num_million");
    }

    #[test]
    fn english_numbers_keep_one() {
        assert_eq!(say(SayKind::Number, "100", "en"), "num_1 num_hundred");
        assert_eq!(
            say(SayKind::Number, "1013", "en"),
            "num_1 num_thousand num_13"
        );
        assert_eq!(
            say(SayKind::Number, "999999999", "en"),
            "num_9 num_hundred num_90 num_9 num_million num_9 num_hundred num_90 num_9 num_thousand num_9 num_hundred num_90 num_9"
        );
    }

    #[test]
    fn digits_amounts_durations() {
        assert_eq!(
            say(SayKind::Digits, "4821", "en"),
            "num_4 num_8 num_2 num_1"
        );
        assert_eq!(
            say(SayKind::Amount, "12.50", "tr"),
            "num_12 currency_lira num_50 currency_kurus"
        );
        assert_eq!(say(SayKind::Amount, "0,05", "en"), "num_5 currency_kurus");
        assert_eq!(say(SayKind::Amount, "7", "en"), "num_7 currency_lira");
        assert_eq!(
            say(SayKind::Duration, "61", "en"),
            "num_1 unit_minute num_1 unit_second"
        );
        assert_eq!(
            say(SayKind::Duration, "3720", "en"),
            "num_1 unit_hour num_2 unit_minutes"
        );
        assert_eq!(say(SayKind::Duration, "120", "tr"), "num_2 unit_minute");
        assert_eq!(say(SayKind::Duration, "0", "en"), "num_0 unit_seconds");
    }

    #[test]
    fn bad_values_are_errors() {
        assert!(fragments(SayKind::Number, "12a", "tr").is_err());
        assert!(fragments(SayKind::Number, "1000000000", "tr").is_err());
        assert!(fragments(SayKind::Digits, "", "tr").is_err());
        assert!(fragments(SayKind::Amount, "1.234", "tr").is_err());
        assert!(fragments(SayKind::Duration, "-5", "tr").is_err());
    }

    #[test]
    fn every_spoken_fragment_is_in_the_fragment_list() {
        for kind in SayKind::ALL {
            let all = all_fragments(kind);
            for v in [
                "0",
                "7",
                "19",
                "20",
                "99",
                "101",
                "1234",
                "20.05",
                "86399",
                "999999999",
            ] {
                for lang in ["tr", "en"] {
                    if let Ok(parts) = fragments(kind, v, lang) {
                        for p in parts {
                            assert!(all.contains(&p), "{p} for {kind:?} {v} {lang}");
                        }
                    }
                }
            }
        }
    }
}
