//! PINs gathered with `secret: true` never reach the logs, even at TRACE level.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use santral_ivr::customers::CustomerDirectory;
use santral_ivr::simulator::{self, HttpStub, LookupStub, Scenario, ScriptedKeys};
use santral_ivr::{FlowSet, ValidationContext};

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.0.lock() {
            b.extend_from_slice(bytes);
        }
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const CRM: &str = r#"
start: pin
steps:
  pin:
    gather: { prompts: [enter_pin], min_digits: 4, max_digits: 4, secret: true, store: pin, next: crm, on_failure: bye }
  crm:
    http:
      method: POST
      url: "https://crm.test/verify?pin={pin}"
      body: { pin: "{pin}" }
      next: bye
      on_error: bye
  bye:
    hangup: {}
"#;

#[test]
fn secret_digits_stay_out_of_logs() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let ctx = ValidationContext {
            queues: None,
            languages: vec![],
            prompts_dir: None,
        };
        let mut sources = vec![("crm".to_owned(), "crm.yaml".to_owned(), CRM.to_owned())];
        for name in ["main", "card-services", "survey"] {
            let file = format!("../../ivr-flows/{name}.yaml");
            sources.push((
                name.to_owned(),
                file.clone(),
                std::fs::read_to_string(&file).expect("demo flow"),
            ));
        }
        let set = Arc::new(
            FlowSet::from_sources(&sources, &ctx, 1)
                .unwrap_or_else(|e| panic!("{e}"))
                .set,
        );
        let mut customers =
            CustomerDirectory::load(Path::new("../../config/customers.yaml")).expect("customers");
        let time =
            simulator::parse_time("2026-11-23T10:00", simulator::DEFAULT_TIME_ZONE).expect("time");
        let card = Scenario {
            flow: "main".into(),
            caller: "+905551110001".into(),
            dialled: "1000".into(),
            language: "tr".into(),
            time: time.clone(),
            digits: "4 100001# 8642 1 1".into(),
            queue: vec![],
            http: vec![],
            lookups: Some(vec![LookupStub::NotFound, LookupStub::Error("down".into())]),
            transfer_connects: true,
        };
        let out = simulator::simulate(
            Arc::clone(&set),
            &card,
            &mut customers,
            &mut ScriptedKeys,
            &mut |_| {},
        )
        .expect("runs");
        assert_eq!(out.variables.get("pin").map(String::as_str), Some("****"));
        let crm = Scenario {
            flow: "crm".into(),
            digits: "8642".into(),
            http: vec![HttpStub {
                status: 500,
                body: serde_json::Value::Null,
                error: None,
            }],
            lookups: None,
            ..card
        };
        let out = simulator::simulate(set, &crm, &mut customers, &mut ScriptedKeys, &mut |_| {})
            .expect("runs");
        let shown: Vec<String> = out
            .entries
            .iter()
            .map(|e| simulator::describe(e, &Default::default()))
            .collect();
        assert!(
            shown
                .iter()
                .any(|l| l.contains("HTTP Post https://crm.test/verify?pin=****")),
            "{shown:#?}"
        );
        assert!(
            !shown.iter().any(|l| l.contains("8642")),
            "the simulator transcript masks it too: {shown:#?}"
        );
    });
    let logs = String::from_utf8_lossy(&buffer.0.lock().expect("buffer")).into_owned();
    assert!(logs.contains("step"), "the test captured the logs: {logs}");
    assert!(
        logs.contains("pin=****"),
        "the HTTP request is logged masked: {logs}"
    );
    assert!(!logs.contains("8642"), "a PIN was logged:\n{logs}");
}
