//! The interpreter driven directly with events and virtual time, one test per behaviour.

use std::sync::Arc;
use std::time::{Duration, Instant};

use santral_ivr::interpreter::{
    EnqueueRequest, HttpResponse, LookupOutcome, PromptRef, QueueOutcome, RecordField,
};
use santral_ivr::model::{LookupAction, RecordPurpose};
use santral_ivr::{Call, CallInfo, Command, Event, FlowSet, ValidationContext};

fn set_of(flows: &[(&str, &str)]) -> Arc<FlowSet> {
    let sources: Vec<(String, String, String)> = flows
        .iter()
        .map(|(name, text)| (name.to_string(), format!("{name}.yaml"), text.to_string()))
        .collect();
    let ctx = ValidationContext {
        queues: Some(vec!["billing".into(), "tech".into()]),
        languages: vec!["tr".into(), "en".into()],
        prompts_dir: None,
    };
    match FlowSet::from_sources(&sources, &ctx, 7) {
        Ok(loaded) => Arc::new(loaded.set),
        Err(e) => panic!("test flow does not load:\n{e}"),
    }
}

struct Harness {
    call: Call,
    t0: Instant,
    now: Instant,
}

impl Harness {
    fn new(flows: &[(&str, &str)], start: &str) -> Harness {
        Self::at(flows, start, "2026-11-23T10:00:00+03:00[Europe/Istanbul]")
    }

    fn at(flows: &[(&str, &str)], start: &str, time: &str) -> Harness {
        let info = CallInfo {
            call_id: "test-call".into(),
            caller: "+905551110001".into(),
            dialled: "1000".into(),
            language: "tr".into(),
            answered_at: time.parse().expect("time"),
        };
        let call = Call::new(set_of(flows), start, info).expect("flow exists");
        let t0 = Instant::now();
        Harness { call, t0, now: t0 }
    }

    fn send(&mut self, event: Event) -> Vec<Command> {
        self.call.handle(event, self.now);
        std::iter::from_fn(|| self.call.poll_command()).collect()
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    /// Moves virtual time to the deadline and fires it.
    fn fire(&mut self) -> Vec<Command> {
        let deadline = self.call.next_deadline().expect("a deadline is set");
        self.now = deadline;
        self.send(Event::TimerFired)
    }

    fn elapsed(&self) -> Duration {
        self.now - self.t0
    }

    fn step(&self) -> String {
        let (f, s) = self.call.current();
        format!("{f}.{s}")
    }
}

fn played(commands: &[Command]) -> Vec<String> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::Play { prompts, .. } => {
                Some(prompts.iter().map(|p| p.name.clone()).collect::<Vec<_>>())
            }
            _ => None,
        })
        .flatten()
        .collect()
}

const MENU: &str = r##"
start: menu
steps:
  menu:
    menu:
      prompts: [main_menu]
      choices: { "1": one, "2": two }
      timeout: 5s
      attempts: 3
      invalid: [invalid_choice]
      no_input: [no_input]
      on_failure: bye
  one:
    hangup: { reason: one }
  two:
    hangup: { reason: two }
  bye:
    hangup: { reason: bye }
"##;

#[test]
fn nothing_happens_before_the_call_is_answered() {
    let mut h = Harness::new(&[("main", MENU)], "main");
    assert!(h.send(Event::Digit('1')).is_empty());
    assert_eq!(h.call.next_deadline(), None);
    let out = h.send(Event::Answered);
    assert_eq!(played(&out), ["main_menu"]);
    assert_eq!(h.call.flow_version(), 7);
}

#[test]
fn menu_key_during_the_prompt_barges_in() {
    let mut h = Harness::new(&[("main", MENU)], "main");
    let out = h.send(Event::Answered);
    assert!(matches!(out[0], Command::Play { barge_in: true, .. }));
    assert!(out.contains(&Command::CollectDigits {
        max_digits: 1,
        terminator: None
    }));
    assert_eq!(
        h.call.next_deadline(),
        None,
        "the timeout starts when the prompt ends"
    );
    let out = h.send(Event::Digit('2'));
    assert_eq!(out[0], Command::StopPlayback);
    assert!(out.contains(&Command::Hangup {
        reason: "two".into()
    }));
    assert!(h.call.is_finished());
    assert_eq!(h.call.hangup_reason(), Some("two"));
}

#[test]
fn menu_timeout_starts_after_the_prompt_and_retries_then_fails() {
    let mut h = Harness::new(&[("main", MENU)], "main");
    h.send(Event::Answered);
    h.advance(Duration::from_secs(7));
    let out = h.send(Event::PromptFinished);
    let deadline = h.now + Duration::from_secs(5);
    assert_eq!(out, vec![Command::StartTimer { at: deadline }]);
    // Too early: nothing happens.
    h.advance(Duration::from_millis(4999));
    assert!(h.send(Event::TimerFired).is_empty());
    // Timeout 1 and 2: "no input" and the menu again.
    for _ in 0..2 {
        let out = h.fire();
        assert_eq!(played(&out), ["no_input", "main_menu"]);
        assert_eq!(h.call.next_deadline(), None);
        h.send(Event::PromptFinished);
    }
    // Third timeout: goodbye.
    let out = h.fire();
    assert!(out.contains(&Command::Hangup {
        reason: "bye".into()
    }));
    assert_eq!(
        h.elapsed(),
        Duration::from_secs(7 + 5 * 3) - Duration::ZERO + Duration::ZERO
    );
}

#[test]
fn invalid_keys_count_as_failures_with_their_own_prompt() {
    let mut h = Harness::new(&[("main", MENU)], "main");
    h.send(Event::Answered);
    let out = h.send(Event::Digit('7'));
    assert_eq!(played(&out), ["invalid_choice", "main_menu"]);
    h.send(Event::PromptFinished);
    let out = h.fire();
    assert_eq!(played(&out), ["no_input", "main_menu"]);
    let out = h.send(Event::Digit('#'));
    assert!(
        out.contains(&Command::Hangup {
            reason: "bye".into()
        }),
        "{out:?}"
    );
}

const PLAY: &str = r##"
start: hello
steps:
  hello:
    play: { prompts: [welcome], barge_in: true, next: menu }
  menu:
    menu:
      prompts: [main_menu]
      choices: { "1": one }
      on_failure: one
  one:
    hangup: {}
"##;

#[test]
fn play_goes_on_when_the_prompt_finishes() {
    let mut h = Harness::new(&[("main", PLAY)], "main");
    let out = h.send(Event::Answered);
    assert_eq!(
        out,
        vec![Command::Play {
            prompts: vec![PromptRef {
                language: "tr".into(),
                name: "welcome".into()
            }],
            barge_in: true
        }]
    );
    let out = h.send(Event::PromptFinished);
    assert_eq!(played(&out), ["main_menu"]);
    assert_eq!(h.step(), "main.menu");
}

#[test]
fn a_key_typed_during_a_barge_in_prompt_is_kept_for_the_menu() {
    let mut h = Harness::new(&[("main", PLAY)], "main");
    h.send(Event::Answered);
    let out = h.send(Event::Digit('1'));
    assert_eq!(out[0], Command::StopPlayback);
    assert!(
        played(&out).is_empty(),
        "the menu prompt is skipped: {out:?}"
    );
    assert!(h.call.is_finished());
    assert_eq!(
        h.call
            .visited()
            .iter()
            .map(|(_, s)| s.as_str())
            .collect::<Vec<_>>(),
        ["hello", "menu", "one"]
    );
}

#[test]
fn keys_during_a_prompt_without_barge_in_are_ignored() {
    let flow = PLAY.replace("barge_in: true", "barge_in: false");
    let mut h = Harness::new(&[("main", &flow)], "main");
    h.send(Event::Answered);
    assert!(h.send(Event::Digit('1')).is_empty());
    let out = h.send(Event::PromptFinished);
    assert_eq!(played(&out), ["main_menu"], "the earlier key was dropped");
}

const GATHER: &str = r##"
start: ask
steps:
  ask:
    gather:
      prompts: [enter_pin]
      min_digits: 4
      max_digits: 6
      terminator: "#"
      first_digit_timeout: 6s
      inter_digit_timeout: 3s
      pattern: "[0-9]+"
      secret: true
      store: pin
      attempts: 2
      invalid: [invalid_input]
      next: done
      on_failure: failed
  done:
    hangup: { reason: "ok {pin}" }
  failed:
    hangup: { reason: failed }
"##;

#[test]
fn gather_ends_on_the_terminator_and_masks_secrets() {
    let mut h = Harness::new(&[("main", GATHER)], "main");
    let out = h.send(Event::Answered);
    assert!(out.contains(&Command::CollectDigits {
        max_digits: 6,
        terminator: Some('#')
    }));
    h.send(Event::PromptFinished);
    assert_eq!(h.call.next_deadline(), Some(h.now + Duration::from_secs(6)));
    for k in ['1', '2', '3', '4'] {
        h.advance(Duration::from_millis(500));
        let out = h.send(Event::Digit(k));
        assert!(
            out.contains(&Command::StartTimer {
                at: h.now + Duration::from_secs(3)
            }),
            "inter-digit timer: {out:?}"
        );
    }
    let out = h.send(Event::Digit('#'));
    assert!(out.contains(&Command::SetRecord(RecordField::Variable {
        name: "pin".into(),
        value: "****".into()
    })));
    let pin = h.call.variables().get("pin").expect("pin stored");
    assert_eq!(pin.text, "1234");
    assert_eq!(format!("{pin:?}"), "\"****\"");
}

#[test]
fn gather_ends_at_max_digits_and_on_the_inter_digit_timeout() {
    let mut h = Harness::new(&[("main", GATHER)], "main");
    h.send(Event::Answered);
    for k in "123456".chars() {
        h.send(Event::Digit(k));
    }
    assert!(h.call.is_finished());
    assert_eq!(h.call.variables()["pin"].text, "123456");

    let mut h = Harness::new(&[("main", GATHER)], "main");
    h.send(Event::Answered);
    for k in "12345".chars() {
        h.send(Event::Digit(k));
    }
    assert!(!h.call.is_finished());
    h.fire();
    assert!(h.call.is_finished());
    assert_eq!(h.call.variables()["pin"].text, "12345");
}

#[test]
fn gather_too_short_is_invalid_and_retries_are_limited() {
    let mut h = Harness::new(&[("main", GATHER)], "main");
    h.send(Event::Answered);
    h.send(Event::Digit('1'));
    let out = h.send(Event::Digit('#'));
    assert_eq!(played(&out), ["invalid_input", "enter_pin"]);
    h.send(Event::PromptFinished);
    let out = h.fire(); // no digit at all: the second failure
    assert!(
        out.contains(&Command::Hangup {
            reason: "failed".into()
        }),
        "{out:?}"
    );
    assert!(!h.call.variables().contains_key("pin"));
}

#[test]
fn gather_with_luhn_accepts_only_valid_card_numbers() {
    let flow = GATHER
        .replace("min_digits: 4", "min_digits: 16")
        .replace("max_digits: 6", "max_digits: 16\n      luhn: true");
    let mut h = Harness::new(&[("main", &flow)], "main");
    h.send(Event::Answered);
    for k in "4111111111111112".chars() {
        h.send(Event::Digit(k));
    }
    assert!(!h.call.is_finished(), "bad checksum is rejected");
    h.send(Event::PromptFinished);
    for k in "4111111111111111".chars() {
        h.send(Event::Digit(k));
    }
    assert!(h.call.is_finished());
    assert_eq!(h.call.variables()["pin"].text, "4111111111111111");
}

const LOGIC: &str = r##"
start: count
steps:
  count:
    set:
      values: { greeting: "hello {call.caller}" }
      increment: [n]
      next: check
  check:
    branch:
      cases:
        - when: { var: n, ge: 3 }
          next: many
        - when: { all: [{ var: call.caller, matches: "^\\+90" }, { var: call.weekday, in: [sat, sun] }] }
          next: weekend
      default: again
  again:
    menu: { prompts: [main_menu], choices: { "1": count }, on_failure: many }
  many:
    hangup: { reason: many }
  weekend:
    hangup: { reason: weekend }
"##;

#[test]
fn set_and_branch_loop_until_a_condition_holds() {
    let mut h = Harness::new(&[("main", LOGIC)], "main");
    h.send(Event::Answered);
    assert_eq!(h.step(), "main.again");
    h.send(Event::Digit('1'));
    assert_eq!(h.call.variables()["n"].text, "2");
    let out = h.send(Event::Digit('1'));
    assert_eq!(
        out,
        vec![
            Command::StopPlayback,
            Command::Hangup {
                reason: "many".into()
            }
        ]
    );
    assert_eq!(h.call.variables()["n"].text, "3");
    assert_eq!(h.call.variables()["greeting"].text, "hello +905551110001");
}

#[test]
fn branch_reads_the_caller_and_the_day() {
    let mut h = Harness::at(
        &[("main", LOGIC)],
        "main",
        "2026-11-28T10:00:00+03:00[Europe/Istanbul]",
    );
    let out = h.send(Event::Answered);
    assert_eq!(
        out,
        vec![Command::Hangup {
            reason: "weekend".into()
        }]
    );
    assert_eq!(h.call.variables()["call.weekday"].text, "sat");
}

const HOURS: &str = r##"
start: hours
steps:
  hours:
    hours:
      timezone: Europe/Istanbul
      weekly:
        - { days: [mon, tue, wed, thu, fri], from: "09:00", to: "18:00" }
      closed:
        - { date: "2026-10-29", name: Republic Day }
      on_open: open
      on_closed: closed
  open:
    hangup: { reason: open }
  closed:
    hangup: { reason: closed }
"##;

#[test]
fn hours_use_the_wall_clock_in_the_flow_time_zone() {
    for (time, expected) in [
        ("2026-11-23T10:00:00+03:00[Europe/Istanbul]", "open"),
        ("2026-11-23T18:30:00+03:00[Europe/Istanbul]", "closed"),
        ("2026-11-23T14:59:00+00:00[UTC]", "closed"), // 17:59 in Istanbul is open? no: see below
        ("2026-10-29T10:00:00+03:00[Europe/Istanbul]", "closed"),
        ("2026-11-22T10:00:00+03:00[Europe/Istanbul]", "closed"),
    ] {
        let mut h = Harness::at(&[("main", HOURS)], "main", time);
        let out = h.send(Event::Answered);
        let expected = if time.starts_with("2026-11-23T14:59") {
            "open"
        } else {
            expected
        };
        assert_eq!(
            out,
            vec![Command::Hangup {
                reason: expected.into()
            }],
            "{time}"
        );
    }
}

const LOOKUP: &str = r##"
start: ask
steps:
  ask:
    gather: { prompts: [enter_pin], max_digits: 4, min_digits: 4, secret: true, store: pin, next: verify, on_failure: no }
  verify:
    lookup:
      action: verify
      customer: "100001"
      pin: "{pin}"
      on_found: yes
      on_not_found: no
      on_error: err
  yes:
    play: { prompts: [card_blocked_1, { say_digits: "{customer.card_last4}" }], next: end }
  no:
    hangup: { reason: no }
  err:
    hangup: { reason: err }
  end:
    hangup: {}
"##;

#[test]
fn lookup_sends_a_masked_pin_and_stores_the_answer() {
    let mut h = Harness::new(&[("main", LOOKUP)], "main");
    h.send(Event::Answered);
    let mut out = Vec::new();
    for k in "1234".chars() {
        out = h.send(Event::Digit(k));
    }
    let request = out
        .iter()
        .find_map(|c| match c {
            Command::Lookup(r) => Some(r.clone()),
            _ => None,
        })
        .expect("lookup command");
    assert_eq!(request.action, LookupAction::Verify);
    assert_eq!(request.customer.as_deref(), Some("100001"));
    assert_eq!(request.pin.as_ref().map(|p| p.text.as_str()), Some("1234"));
    assert!(
        !format!("{request:?}").contains("1234"),
        "debug output masks the PIN"
    );
    // A stale answer is ignored.
    assert!(
        h.send(Event::LookupResult {
            request: request.request + 1,
            outcome: LookupOutcome::NotFound
        })
        .is_empty()
    );
    let fields = [("card_last4".to_owned(), "4821".to_owned())]
        .into_iter()
        .collect();
    let out = h.send(Event::LookupResult {
        request: request.request,
        outcome: LookupOutcome::Found(fields),
    });
    assert_eq!(
        played(&out),
        ["card_blocked_1", "num_4", "num_8", "num_2", "num_1"]
    );
}

#[test]
fn lookup_not_found_and_failure_take_their_branches() {
    for (outcome, reason) in [
        (LookupOutcome::NotFound, "no"),
        (LookupOutcome::Failed("down".into()), "err"),
    ] {
        let mut h = Harness::new(&[("main", LOOKUP)], "main");
        h.send(Event::Answered);
        for k in "1234".chars() {
            h.send(Event::Digit(k));
        }
        let out = h.send(Event::LookupResult {
            request: 1,
            outcome,
        });
        assert_eq!(
            out,
            vec![Command::Hangup {
                reason: reason.into()
            }]
        );
    }
}

const HTTP: &str = r##"
start: ask
steps:
  ask:
    gather: { prompts: [enter_pin], max_digits: 4, secret: true, store: pin, next: crm, on_failure: failed }
  crm:
    http:
      method: POST
      url: "https://crm.test/callers/{call.caller}?pin={pin}"
      headers: { x-api-key: "demo" }
      body: { caller: "{call.caller}", pin: "{pin}", n: 1 }
      timeout: 2s
      extract: { vip: /customer/vip, name: /customer/name }
      next: got
      on_error: failed
  got:
    hangup: { reason: "got" }
  failed:
    hangup: { reason: failed }
"##;

fn start_http() -> (Harness, u64) {
    let mut h = Harness::new(&[("main", HTTP)], "main");
    h.send(Event::Answered);
    let mut out = Vec::new();
    for k in "9876".chars() {
        out = h.send(Event::Digit(k));
    }
    let request = out
        .iter()
        .find_map(|c| match c {
            Command::Http(r) => Some(r.clone()),
            _ => None,
        })
        .expect("http command");
    assert_eq!(
        request.url.text,
        "https://crm.test/callers/+905551110001?pin=9876"
    );
    assert_eq!(
        request.url.redacted,
        "https://crm.test/callers/+905551110001?pin=****"
    );
    assert_eq!(
        request.body,
        Some(serde_json::json!({"caller": "+905551110001", "pin": "9876", "n": 1}))
    );
    assert_eq!(
        request.body_redacted,
        Some(serde_json::json!({"caller": "+905551110001", "pin": "****", "n": 1}))
    );
    assert_eq!(request.timeout, Duration::from_secs(2));
    (h, request.request)
}

#[test]
fn http_response_fields_become_variables() {
    let (mut h, id) = start_http();
    let body = serde_json::json!({"customer": {"vip": true, "name": "Ayşe"}});
    let out = h.send(Event::HttpResult {
        request: id,
        result: Ok(HttpResponse { status: 200, body }),
    });
    assert!(out.contains(&Command::Hangup {
        reason: "got".into()
    }));
    assert_eq!(h.call.variables()["vip"].text, "true");
    assert_eq!(h.call.variables()["name"].text, "Ayşe");
}

#[test]
fn http_errors_statuses_and_timeouts_take_on_error() {
    let (mut h, id) = start_http();
    let out = h.send(Event::HttpResult {
        request: id,
        result: Ok(HttpResponse {
            status: 503,
            body: serde_json::Value::Null,
        }),
    });
    assert!(out.contains(&Command::Hangup {
        reason: "failed".into()
    }));

    let (mut h, id) = start_http();
    let out = h.send(Event::HttpResult {
        request: id,
        result: Err("connection refused".into()),
    });
    assert!(out.contains(&Command::Hangup {
        reason: "failed".into()
    }));

    let (mut h, id) = start_http();
    let out = h.fire();
    assert!(out.contains(&Command::Hangup {
        reason: "failed".into()
    }));
    // The late answer changes nothing.
    assert!(
        h.send(Event::HttpResult {
            request: id,
            result: Ok(HttpResponse {
                status: 200,
                body: serde_json::Value::Null
            })
        })
        .is_empty()
    );
}

const QUEUE: &str = r##"
start: q
steps:
  q:
    queue:
      queue: billing
      skills: { billing: 3 }
      priority: 2
      prompts: [queue_billing]
      announce: { position: true, wait_time: true, every: 20s }
      max_wait: 3m
      exit_digit: "*"
      on_timeout: timeout
      on_exit: left
      on_unavailable: nobody
      after_call: survey
  timeout:
    hangup: { reason: timeout }
  left:
    hangup: { reason: left }
  nobody:
    hangup: { reason: nobody }
  survey:
    goto: { flow: survey }
"##;

const SURVEY: &str = r##"
start: ask
steps:
  ask:
    survey:
      prompts: [survey_question]
      thanks: [survey_thanks]
      invalid: [invalid_choice]
      timeout: 5s
      attempts: 2
      next: bye
  bye:
    hangup: { reason: bye }
"##;

#[test]
fn queue_hands_over_with_its_settings() {
    let mut h = Harness::new(&[("main", QUEUE), ("survey", SURVEY)], "main");
    let out = h.send(Event::Answered);
    let request = out
        .iter()
        .find_map(|c| match c {
            Command::Enqueue(r) => Some(r.clone()),
            _ => None,
        })
        .expect("enqueue");
    assert_eq!(
        request,
        EnqueueRequest {
            queue: Some("billing".into()),
            skills: [("billing".to_owned(), 3)].into_iter().collect(),
            language: "tr".into(),
            priority: 2,
            prompts: vec![PromptRef {
                language: "tr".into(),
                name: "queue_billing".into()
            }],
            announce: santral_ivr::model::Announce {
                position: true,
                wait_time: true,
                every: santral_ivr::model::FlowDuration(Duration::from_secs(20))
            },
            max_wait: Some(Duration::from_secs(180)),
            exit_digit: Some('*'),
        }
    );
    assert!(out.contains(&Command::SetRecord(RecordField::Queue("billing".into()))));
}

#[test]
fn queue_outcomes_take_their_branches() {
    for (outcome, reason) in [
        (QueueOutcome::Timeout, "timeout"),
        (QueueOutcome::Unavailable, "nobody"),
        (QueueOutcome::Left, "left"),
    ] {
        let mut h = Harness::new(&[("main", QUEUE), ("survey", SURVEY)], "main");
        h.send(Event::Answered);
        let out = h.send(Event::QueueResult(outcome));
        assert_eq!(
            out,
            vec![Command::Hangup {
                reason: reason.into()
            }]
        );
    }
    let mut h = Harness::new(&[("main", QUEUE), ("survey", SURVEY)], "main");
    h.send(Event::Answered);
    let out = h.send(Event::Digit('*'));
    assert_eq!(
        out,
        vec![
            Command::LeaveQueue,
            Command::Hangup {
                reason: "left".into()
            }
        ]
    );
}

#[test]
fn after_the_agent_call_the_survey_scores_the_call() {
    let mut h = Harness::new(&[("main", QUEUE), ("survey", SURVEY)], "main");
    h.send(Event::Answered);
    let out = h.send(Event::QueueResult(QueueOutcome::Answered {
        agent: "2001".into(),
    }));
    assert_eq!(
        out,
        vec![Command::SetRecord(RecordField::Agent("2001".into()))]
    );
    assert!(
        h.send(Event::Digit('*')).is_empty(),
        "the exit key does nothing once connected"
    );
    h.advance(Duration::from_secs(300));
    let out = h.send(Event::QueueResult(QueueOutcome::AgentCallFinished));
    assert_eq!(played(&out), ["survey_question"]);
    assert_eq!(h.step(), "survey.ask");
    let out = h.send(Event::Digit('6'));
    assert_eq!(played(&out), ["invalid_choice", "survey_question"]);
    let out = h.send(Event::Digit('4'));
    assert!(out.contains(&Command::SetRecord(RecordField::SurveyScore(4))));
    assert_eq!(played(&out), ["survey_thanks"]);
    let out = h.send(Event::PromptFinished);
    assert_eq!(
        out,
        vec![Command::Hangup {
            reason: "bye".into()
        }]
    );
}

#[test]
fn survey_without_an_answer_moves_on_without_a_score() {
    let mut h = Harness::new(&[("main", SURVEY)], "main");
    h.send(Event::Answered);
    h.send(Event::PromptFinished);
    let out = h.fire();
    assert_eq!(played(&out), ["invalid_choice", "survey_question"]);
    h.send(Event::PromptFinished);
    let out = h.fire();
    assert_eq!(
        out,
        vec![Command::Hangup {
            reason: "bye".into()
        }]
    );
}

const RECORD: &str = r##"
start: rec
steps:
  rec:
    record:
      prompts: [leave_message]
      beep: true
      max_length: 30s
      stop_digit: "#"
      next: done
  done:
    hangup: { reason: saved }
"##;

#[test]
fn record_stops_on_the_stop_key() {
    let mut h = Harness::new(&[("main", RECORD)], "main");
    let out = h.send(Event::Answered);
    assert_eq!(played(&out), ["leave_message"]);
    let out = h.send(Event::PromptFinished);
    assert_eq!(
        out[0],
        Command::Record {
            purpose: RecordPurpose::Voicemail,
            beep: true,
            max_length: Duration::from_secs(30),
            stop_digit: '#'
        }
    );
    assert!(h.send(Event::Digit('1')).is_empty());
    let out = h.send(Event::Digit('#'));
    assert_eq!(out, vec![Command::CancelTimer, Command::StopRecording]);
    let out = h.send(Event::RecordingFinished { id: "vm-1".into() });
    assert!(out.contains(&Command::SetRecord(RecordField::Recording {
        id: "vm-1".into(),
        purpose: RecordPurpose::Voicemail
    })));
    assert!(
        out.contains(&Command::Hangup {
            reason: "saved".into()
        }),
        "{out:?}"
    );
    assert_eq!(h.call.variables()["recording"].text, "vm-1");
}

#[test]
fn record_stops_at_its_maximum_length() {
    let mut h = Harness::new(&[("main", RECORD)], "main");
    h.send(Event::Answered);
    h.send(Event::PromptFinished);
    let start = h.now;
    let out = h.fire();
    assert_eq!(h.now - start, Duration::from_secs(30));
    assert_eq!(out, vec![Command::StopRecording]);
    h.send(Event::RecordingFinished { id: "vm-2".into() });
    assert!(h.call.is_finished());
}

const TRANSFER: &str = r##"
start: tr
steps:
  tr:
    transfer: { to: "2001", prompts: [queue_operator], timeout: 20s, on_failure: failed }
  failed:
    hangup: { reason: failed }
"##;

#[test]
fn transfer_after_its_prompt_and_failure_branch() {
    let mut h = Harness::new(&[("main", TRANSFER)], "main");
    h.send(Event::Answered);
    let out = h.send(Event::PromptFinished);
    assert_eq!(
        out,
        vec![Command::Transfer {
            to: "2001".into(),
            timeout: Duration::from_secs(20)
        }]
    );
    h.send(Event::TransferResult { connected: true });
    assert!(h.call.is_finished());

    let mut h = Harness::new(&[("main", TRANSFER)], "main");
    h.send(Event::Answered);
    h.send(Event::PromptFinished);
    let out = h.send(Event::TransferResult { connected: false });
    assert_eq!(
        out,
        vec![Command::Hangup {
            reason: "failed".into()
        }]
    );
}

const LANGUAGE: &str = r##"
start: en
steps:
  en:
    language: { set: en, next: tag }
  tag:
    tag: { labels: [english, demo], next: hello }
  hello:
    play: { prompts: [welcome, { say_number: "1013" }], next: other }
  other:
    goto: { flow: other, step: second }
"##;

const OTHER: &str = r##"
start: first
steps:
  first:
    hangup: { reason: first }
  second:
    hangup: { reason: second }
"##;

#[test]
fn language_tag_goto_and_say() {
    let mut h = Harness::new(&[("main", LANGUAGE), ("other", OTHER)], "main");
    let out = h.send(Event::Answered);
    assert_eq!(
        out[0],
        Command::SetRecord(RecordField::Language("en".into()))
    );
    assert_eq!(
        out[1],
        Command::SetRecord(RecordField::Tag("english".into()))
    );
    assert_eq!(out[2], Command::SetRecord(RecordField::Tag("demo".into())));
    let Command::Play { prompts, .. } = &out[3] else {
        panic!("play expected: {out:?}")
    };
    assert!(prompts.iter().all(|p| p.language == "en"));
    let names: Vec<&str> = prompts.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["welcome", "num_1", "num_thousand", "num_13"]);
    let out = h.send(Event::PromptFinished);
    assert_eq!(
        out,
        vec![Command::Hangup {
            reason: "second".into()
        }]
    );
    assert_eq!(h.step(), "other.second");
    assert_eq!(h.call.language(), "en");
}

#[test]
fn hanging_up_ends_the_call_at_any_point() {
    let mut h = Harness::new(&[("main", GATHER)], "main");
    h.send(Event::Answered);
    h.send(Event::PromptFinished);
    let out = h.send(Event::HungUp);
    assert_eq!(out, vec![Command::CancelTimer]);
    assert!(h.call.is_finished());
    assert_eq!(h.call.next_deadline(), None);
    assert!(h.send(Event::Digit('1')).is_empty());
}

#[test]
fn a_call_keeps_its_flow_version() {
    let old = set_of(&[("main", MENU)]);
    let info = CallInfo {
        call_id: "c".into(),
        caller: "1".into(),
        dialled: "1000".into(),
        language: "tr".into(),
        answered_at: "2026-11-23T10:00:00+03:00[Europe/Istanbul]"
            .parse()
            .expect("time"),
    };
    let mut call = Call::new(Arc::clone(&old), "main", info.clone()).expect("flow");
    drop(old);
    // The call still runs on its own Arc after the store moved on.
    call.handle(Event::Answered, Instant::now());
    assert_eq!(call.flow_version(), 7);
    assert!(Call::new(set_of(&[("main", MENU)]), "nope", info).is_err());
}

#[test]
fn a_loop_that_never_waits_is_cut_short_at_run_time() {
    let text = "start: a\nsteps:\n  a:\n    set: { increment: [n], next: b }\n  b:\n    branch: { cases: [], default: a }\n";
    let set = FlowSet::parse_unchecked(&[("main".into(), "main.yaml".into(), text.into())], 1)
        .expect("parses");
    let info = CallInfo {
        call_id: "loop".into(),
        caller: "1".into(),
        dialled: "1000".into(),
        language: "tr".into(),
        answered_at: "2026-11-23T10:00:00+03:00[Europe/Istanbul]"
            .parse()
            .expect("time"),
    };
    let mut call = Call::new(Arc::new(set), "main", info).expect("flow");
    call.handle(Event::Answered, Instant::now());
    let out: Vec<Command> = std::iter::from_fn(|| call.poll_command()).collect();
    assert!(call.is_finished());
    assert!(
        matches!(&out[..], [Command::Hangup { reason }] if reason.contains("without waiting")),
        "{out:?}"
    );
    let n: usize = call.variables()["n"].text.parse().expect("number");
    assert_eq!(n, santral_ivr::interpreter::MAX_STEPS_PER_EVENT / 2);
}
