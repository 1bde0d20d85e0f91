//! The demo flow tests (ivr-flows/tests/*.yaml) pass and cover every step and transition, and
//! the demo customer data answers lookups.

use std::path::Path;
use std::sync::Arc;

use santral_ivr::customers::CustomerDirectory;
use santral_ivr::flowtest::{self, TestEnvironment};
use santral_ivr::interpreter::{LookupOutcome, LookupRequest};
use santral_ivr::model::LookupAction;
use santral_ivr::template::Value;
use santral_ivr::{FlowSet, ValidationContext};

fn customers() -> CustomerDirectory {
    CustomerDirectory::load(Path::new("../../config/customers.yaml"))
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn demo_flow_tests_pass_and_cover_everything() {
    let ctx = ValidationContext {
        queues: Some(vec!["billing".into(), "tech".into(), "sales".into()]),
        languages: vec!["tr".into(), "en".into()],
        prompts_dir: Some("../../prompts".into()),
    };
    let loaded =
        FlowSet::load_dir(Path::new("../../ivr-flows"), &ctx, 1).unwrap_or_else(|e| panic!("{e}"));
    let env = TestEnvironment {
        set: Arc::new(loaded.set),
        customers: customers(),
        default_language: "tr".into(),
    };
    let mut results = Vec::new();
    for file in
        flowtest::test_files(Path::new("../../ivr-flows/tests")).unwrap_or_else(|e| panic!("{e}"))
    {
        results.extend(flowtest::run_file(&file, &env).unwrap_or_else(|e| panic!("{e}")));
    }
    let failed: Vec<String> = results
        .iter()
        .filter(|r| !r.passed())
        .map(|r| format!("{}: {}: {:?}", r.file, r.name, r.failures))
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
    assert!(results.len() >= 40);
    let coverage = flowtest::coverage(&env.set, &results);
    assert_eq!(coverage.steps.0, coverage.steps.1, "{:?}", coverage.missed);
    assert_eq!(
        coverage.transitions.0, coverage.transitions.1,
        "{:?}",
        coverage.missed
    );
}

fn request(action: LookupAction, customer: &str, pin: Option<&str>) -> LookupRequest {
    LookupRequest {
        request: 1,
        action,
        customer: Some(customer.into()),
        pin: pin.map(Value::secret),
        card: None,
        caller: "+447700900123".into(),
    }
}

#[test]
fn customer_directory_verifies_fetches_and_blocks() {
    let mut dir = customers();
    assert!(matches!(
        dir.answer(&request(LookupAction::Verify, "100001", Some("1234"))),
        LookupOutcome::Found(_)
    ));
    assert_eq!(
        dir.answer(&request(LookupAction::Verify, "100001", Some("12345"))),
        LookupOutcome::NotFound
    );
    assert_eq!(
        dir.answer(&request(LookupAction::Verify, "100001", None)),
        LookupOutcome::NotFound
    );
    assert_eq!(
        dir.answer(&request(LookupAction::Fetch, "555", None)),
        LookupOutcome::NotFound
    );
    let LookupOutcome::Found(fields) = dir.answer(&request(LookupAction::FetchByCaller, "", None))
    else {
        panic!("caller +447700900123 is John Smith");
    };
    assert_eq!(fields["name"], "John Smith");
    let LookupOutcome::Found(fields) =
        dir.answer(&request(LookupAction::BlockCard, "100001", None))
    else {
        panic!("block");
    };
    assert_eq!(fields["card_last4"], "4821");
    assert_eq!(fields["active_cards"], "1");
    let LookupOutcome::Found(fields) =
        dir.answer(&request(LookupAction::BlockCard, "100001", None))
    else {
        panic!("second card");
    };
    assert_eq!(fields["card_last4"], "9034");
    assert_eq!(
        dir.answer(&request(LookupAction::BlockCard, "100001", None)),
        LookupOutcome::NotFound
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("customers.yaml");
    dir.save(&file).expect("save");
    let again = CustomerDirectory::load(&file).expect("round trip");
    assert!(again.customer("100001").is_some_and(|c| {
        c.cards
            .iter()
            .all(|k| format!("{:?}", k.status) == "Blocked")
    }));
}

#[test]
fn bad_customer_files_are_reported() {
    let err = CustomerDirectory::parse("customers:\n  - number: 1\n    pin: 2\n    name: x\n    cards: [{ last4: \"12\", status: active }]\n", "c.yaml")
        .expect_err("bad last4");
    assert!(
        err.to_string()
            .contains("card last4 `12` must be four digits"),
        "{err}"
    );
    let err = CustomerDirectory::parse("customers: [{ number: \"1\" }]\n", "c.yaml")
        .expect_err("missing fields");
    assert!(err.to_string().starts_with("c.yaml:1:"), "{err}");
}
