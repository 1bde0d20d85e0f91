//! Test harness: an engine in virtual time that records every output.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use santral_acd::*;

pub struct Harness {
    pub acd: Acd,
    pub t0: Instant,
    pub now: Instant,
    pub out: Vec<Output>,
}

impl Harness {
    pub fn new(config: AcdConfig) -> Self {
        let t0 = Instant::now();
        let acd = Acd::new(config, Box::new(MemoryCallbackStore::default()), 7, t0)
            .expect("valid config");
        Self {
            acd,
            t0,
            now: t0,
            out: Vec::new(),
        }
    }

    pub fn with_store(config: AcdConfig, store: Box<dyn CallbackStore>) -> Self {
        let t0 = Instant::now();
        let acd = Acd::new(config, store, 7, t0).expect("valid config");
        Self {
            acd,
            t0,
            now: t0,
            out: Vec::new(),
        }
    }

    /// Moves virtual time to `secs` after the start, firing due timers in order.
    pub fn at(&mut self, secs: f64) {
        let target = self.t0 + Duration::from_secs_f64(secs);
        for _ in 0..100_000 {
            match self.acd.poll_timeout() {
                Some(t) if t <= target => {
                    self.now = self.now.max(t);
                    self.acd.handle_timeout(t);
                }
                _ => break,
            }
        }
        self.now = target;
        self.acd.handle_timeout(target);
        self.drain();
    }

    pub fn input(&mut self, input: Input) {
        self.try_input(input).expect("input accepted");
    }

    pub fn try_input(&mut self, input: Input) -> Result<(), AcdError> {
        let r = self.acd.handle(input, self.now);
        self.drain();
        r
    }

    fn drain(&mut self) {
        while let Some(o) = self.acd.poll_output() {
            self.out.push(o);
        }
    }

    pub fn take(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.out)
    }

    /// (call, agent) of every offer since the last take.
    pub fn offers(&mut self) -> Vec<(u64, String)> {
        self.take()
            .into_iter()
            .filter_map(|o| match o {
                Output::Offer(offer) => Some((offer.call.0, offer.agent.0)),
                _ => None,
            })
            .collect()
    }

    pub fn login(&mut self, agent: &str) {
        self.input(Input::AgentLogin {
            agent: AgentId::new(agent),
        });
    }

    pub fn join(&mut self, join: CallJoin) {
        self.input(Input::CallJoin(join));
    }

    pub fn answer(&mut self, call: u64, agent: &str) {
        self.input(Input::OfferAnswered {
            call: CallId(call),
            agent: AgentId::new(agent),
        });
    }

    pub fn end(&mut self, call: u64) {
        self.input(Input::CallEnded { call: CallId(call) });
    }

    pub fn status(&self, agent: &str) -> AgentStatus {
        self.acd.agent_status(agent).cloned().expect("known agent")
    }
}

pub fn left_reasons(outputs: &[Output]) -> Vec<(u64, String)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::CallLeft { call, reason, .. } => Some((call.0, reason.as_str().to_owned())),
            _ => None,
        })
        .collect()
}

pub fn config(queues: Vec<QueueConfig>, agents: Vec<AgentConfig>) -> AcdConfig {
    AcdConfig {
        queues,
        agents,
        no_answer_pause_after: 2,
        retry_delay_secs: 2,
        interval_secs: 900,
    }
}

pub fn call(n: u64, queue: &str) -> CallJoin {
    CallJoin::new(CallId(n), queue)
}
