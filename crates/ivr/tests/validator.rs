//! Broken flows give exact `file:line:col: message` lines.

use std::path::{Path, PathBuf};

use santral_ivr::{FlowSet, ValidationContext};

fn ctx() -> ValidationContext {
    ValidationContext {
        queues: Some(vec!["billing".into(), "tech".into(), "sales".into()]),
        languages: vec!["tr".into(), "en".into()],
        prompts_dir: Some(PathBuf::from("../../prompts")),
    }
}

/// Loads one fixture (with the demo flows beside it when `with_demo`) and returns every line.
fn check(file: &str) -> Vec<String> {
    let path = Path::new("tests/broken").join(file);
    match FlowSet::load_paths(&[path], &ctx(), 1) {
        Ok(loaded) => loaded.warnings.iter().map(ToString::to_string).collect(),
        Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn every_problem_of_a_broken_flow_is_listed_with_its_position() {
    let lines = check("many.yaml");
    let expected = [
        "tests/broken/many.yaml:5:26: prompt `wellcome` is missing for language `tr` (expected ../../prompts/tr/wellcome.wav)",
        "tests/broken/many.yaml:5:26: prompt `wellcome` is missing for language `en` (expected ../../prompts/en/wellcome.wav)",
        "tests/broken/many.yaml:6:13: unknown step `menuu`, did you mean `menu`?",
        "tests/broken/many.yaml:7:3: step `menu` is unreachable from start `welcome`",
        "tests/broken/many.yaml:13:9: menu key `x` is not one of 0-9, * or #",
        "tests/broken/many.yaml:15:3: step `billing` is unreachable from start `welcome`",
        "tests/broken/many.yaml:17:14: unknown queue `biling`, did you mean `billing`?",
        "tests/broken/many.yaml:19:3: step `tech` is unreachable from start `welcome`",
        "tests/broken/many.yaml:23:16: invalid regular expression `[0-9`: error: unclosed character class",
        "tests/broken/many.yaml:27:3: step `spin` is unreachable from start `welcome`",
        "tests/broken/many.yaml:31:3: step `spin_again` is unreachable from start `welcome`",
        "tests/broken/many.yaml:34:38: invalid regular expression `(`: error: unclosed group",
        "tests/broken/many.yaml:35:17: loop many.spin → many.spin_again → many.spin never waits for the caller and would spin forever",
        "tests/broken/many.yaml:37:3: step `lonely` is unreachable from start `welcome`",
        "tests/broken/many.yaml:39:3: step `bye` is unreachable from start `welcome`",
        "tests/broken/many.yaml:40:22: language `de` is not configured (languages: tr, en)",
        "tests/broken/many.yaml:41:3: step `gone` is unreachable from start `welcome`",
        "tests/broken/many.yaml:42:19: unknown flow `nowhere`",
    ];
    assert_eq!(lines, expected, "\nactual:\n{}", lines.join("\n"));
}

#[test]
fn yaml_syntax_errors_point_at_the_place() {
    let lines = check("syntax.yaml");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("tests/broken/syntax.yaml:6:"),
        "{lines:?}"
    );
}

#[test]
fn unknown_fields_and_kinds_are_named() {
    assert_eq!(
        check("typo.yaml"),
        [
            "tests/broken/typo.yaml:6:7: unknown field `nxt`, expected one of prompts, barge_in, next"
        ]
    );
    let kind = check("kind.yaml");
    assert_eq!(kind.len(), 1);
    assert!(
        kind[0].starts_with("tests/broken/kind.yaml:4:5: unknown variant `ploy`"),
        "{kind:?}"
    );
}

#[test]
fn a_digit_twice_in_a_menu_is_an_error() {
    assert_eq!(
        check("dupkey.yaml"),
        [
            "tests/broken/dupkey.yaml:9:9: duplicate key `1`: each key may appear once (in a menu: one step per key)"
        ]
    );
}

#[test]
fn reading_an_unset_variable_is_a_warning() {
    assert_eq!(
        check("warn.yaml"),
        [
            "tests/broken/warn.yaml:6:24: warning: variable `customer_no` may be read before any step sets it"
        ]
    );
}

#[test]
fn the_demo_flows_are_clean() {
    let loaded = FlowSet::load_dir(Path::new("../../ivr-flows"), &ctx(), 1)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let mut names: Vec<&str> = loaded.set.flows().map(|f| f.name.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "agent-direct",
            "agent-feature",
            "agent-feature-refused",
            "card-services",
            "crm-example",
            "main",
            "survey"
        ]
    );
}

#[test]
fn checking_one_file_resolves_goto_through_its_directory() {
    let (problems, flows) =
        FlowSet::check_paths(&[PathBuf::from("../../ivr-flows/main.yaml")], &ctx());
    assert_eq!(flows, 1);
    assert!(problems.is_empty(), "{problems:?}");
    // Siblings' own problems are not reported for the file asked about.
    let (problems, _) = FlowSet::check_paths(&[PathBuf::from("tests/broken/warn.yaml")], &ctx());
    let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "tests/broken/warn.yaml:6:24: warning: variable `customer_no` may be read before any step sets it"
        ]
    );
    let (problems, _) = FlowSet::check_paths(&[PathBuf::from("tests/no-such-file.yaml")], &ctx());
    assert_eq!(problems.len(), 1);
    assert!(
        problems[0]
            .to_string()
            .starts_with("tests/no-such-file.yaml:1:1: cannot read"),
        "{problems:?}"
    );
}

#[test]
fn the_committed_schema_matches_the_flow_format() {
    let committed = std::fs::read_to_string("../../ivr-flows/flow.schema.json")
        .expect("ivr-flows/flow.schema.json");
    let committed: serde_json::Value = serde_json::from_str(&committed).expect("valid JSON");
    assert_eq!(
        committed,
        santral_ivr::model::flow_schema(),
        "regenerate with: santral flow schema > ivr-flows/flow.schema.json"
    );
}
