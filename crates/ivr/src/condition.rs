//! Evaluating `branch` conditions over the call's variables.

use std::cmp::Ordering;

use regex::Regex;

use crate::model::{Condition, ScalarText};
use crate::template::{Lookup, Value};

/// Compiled regular expressions of a flow set, by pattern text.
pub trait RegexCache {
    fn regex(&self, pattern: &str) -> Option<&Regex>;
}

/// Compares as numbers when both sides are numbers, else as text.
fn compare(left: &str, right: &str) -> Ordering {
    match (left.trim().parse::<f64>(), right.trim().parse::<f64>()) {
        (Ok(a), Ok(b)) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
        _ => left.cmp(right),
    }
}

fn equal(left: &str, right: &ScalarText) -> bool {
    compare(left, &right.0) == Ordering::Equal
}

pub fn holds(condition: &Condition, vars: &dyn Lookup, regexes: &dyn RegexCache) -> bool {
    if let Some(var) = &condition.var {
        let value: Option<Value> = vars.get(var);
        if let Some(expected) = condition.is_set
            && expected != value.is_some()
        {
            return false;
        }
        let text = value.map(|v| v.text).unwrap_or_default();
        let t = text.as_str();
        let checks = [
            condition.eq.as_ref().is_none_or(|x| equal(t, x)),
            condition.ne.as_ref().is_none_or(|x| !equal(t, x)),
            condition
                .lt
                .as_ref()
                .is_none_or(|x| compare(t, &x.0) == Ordering::Less),
            condition
                .le
                .as_ref()
                .is_none_or(|x| compare(t, &x.0) != Ordering::Greater),
            condition
                .gt
                .as_ref()
                .is_none_or(|x| compare(t, &x.0) == Ordering::Greater),
            condition
                .ge
                .as_ref()
                .is_none_or(|x| compare(t, &x.0) != Ordering::Less),
            condition
                .one_of
                .as_ref()
                .is_none_or(|xs| xs.iter().any(|x| equal(t, x))),
            condition
                .not_in
                .as_ref()
                .is_none_or(|xs| !xs.iter().any(|x| equal(t, x))),
            condition
                .matches
                .as_ref()
                .is_none_or(|p| regexes.regex(p).is_some_and(|re| re.is_match(t))),
        ];
        if checks.iter().any(|ok| !ok) {
            return false;
        }
    }
    condition.all.iter().all(|c| holds(c, vars, regexes))
        && (condition.any.is_empty() || condition.any.iter().any(|c| holds(c, vars, regexes)))
        && condition
            .not
            .as_ref()
            .is_none_or(|c| !holds(c, vars, regexes))
}

/// Every regex pattern in a condition, with its position.
pub fn patterns(condition: &Condition) -> Vec<&crate::Located<String>> {
    let mut out: Vec<&crate::Located<String>> = condition.matches.iter().collect();
    for c in condition
        .all
        .iter()
        .chain(condition.any.iter())
        .chain(condition.not.as_deref())
    {
        out.extend(patterns(c));
    }
    out
}

/// Every variable a condition reads, with its position.
pub fn variables(condition: &Condition) -> Vec<&crate::Located<String>> {
    let mut out: Vec<&crate::Located<String>> = condition.var.iter().collect();
    for c in condition
        .all
        .iter()
        .chain(condition.any.iter())
        .chain(condition.not.as_deref())
    {
        out.extend(variables(c));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, HashMap};

    struct Cache(HashMap<String, Regex>);
    impl RegexCache for Cache {
        fn regex(&self, p: &str) -> Option<&Regex> {
            self.0.get(p)
        }
    }

    fn cond(yaml: &str) -> Condition {
        serde_saphyr::from_str(yaml).expect("test condition")
    }

    #[test]
    fn comparisons_membership_and_regex() {
        let mut vars = BTreeMap::new();
        vars.insert("attempts".to_owned(), Value::plain("3"));
        vars.insert("call.caller".to_owned(), Value::plain("+905551234567"));
        vars.insert("call.language".to_owned(), Value::plain("en"));
        vars.insert("call.time".to_owned(), Value::plain("21:05"));
        let mut cache = HashMap::new();
        cache.insert("^\\+90555".to_owned(), Regex::new("^\\+90555").expect("re"));
        let cache = Cache(cache);
        let t = |y: &str| holds(&cond(y), &vars, &cache);
        assert!(t("{var: attempts, ge: 3}"));
        assert!(!t("{var: attempts, lt: 3}"));
        assert!(
            t("{var: attempts, eq: \"3.0\"}"),
            "numbers compare as numbers"
        );
        assert!(t("{var: attempts, gt: 2, lt: 10}"));
        assert!(t("{var: call.language, in: [en, de]}"));
        assert!(!t("{var: call.language, not_in: [en]}"));
        assert!(t("{var: call.caller, matches: \"^\\\\+90555\"}"));
        assert!(t("{var: call.time, ge: \"18:00\"}"));
        assert!(t("{var: missing, is_set: false}"));
        assert!(!t("{var: missing, is_set: true}"));
        assert!(t("{any: [{var: attempts, eq: 1}, {var: attempts, eq: 3}]}"));
        assert!(!t(
            "{all: [{var: attempts, eq: 1}, {var: attempts, eq: 3}]}"
        ));
        assert!(t("{not: {var: attempts, eq: 1}}"));
    }
}
