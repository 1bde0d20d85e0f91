//! The customer data a flow verifies callers against (config/customers.yaml in the demo):
//! customer numbers, PINs, phone numbers and cards. The interpreter asks for lookups with a
//! `LookupRequest`; a host answers from this directory and persists changes (blocked cards).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::interpreter::{LookupOutcome, LookupRequest};
use crate::located::Position;
use crate::model::LookupAction;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerDirectory {
    pub customers: Vec<Customer>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Customer {
    pub number: String,
    pub pin: String,
    pub name: String,
    #[serde(default)]
    pub language: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub cards: Vec<Card>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Card {
    pub last4: String,
    pub status: CardStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CardStatus {
    Active,
    Blocked,
}

impl CardStatus {
    fn name(self) -> &'static str {
        match self {
            CardStatus::Active => "active",
            CardStatus::Blocked => "blocked",
        }
    }
}

/// Compares PINs without stopping at the first differing byte.
fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0xff));
    }
    diff == 0
}

impl CustomerDirectory {
    pub fn parse(text: &str, file: &str) -> Result<Self, Diagnostics> {
        let dir: CustomerDirectory = serde_saphyr::from_str(text)
            .map_err(|e| Diagnostics(vec![Diagnostic::from_yaml(file, &e)]))?;
        let mut problems = Vec::new();
        for (i, c) in dir.customers.iter().enumerate() {
            if dir.customers[..i].iter().any(|o| o.number == c.number) {
                problems.push(Diagnostic::error(
                    file,
                    Position::UNKNOWN,
                    format!("customer number {} appears twice", c.number),
                ));
            }
            for card in &c.cards {
                if card.last4.len() != 4 || !card.last4.chars().all(|d| d.is_ascii_digit()) {
                    problems.push(Diagnostic::error(
                        file,
                        Position::UNKNOWN,
                        format!(
                            "customer {}: card last4 `{}` must be four digits",
                            c.number, card.last4
                        ),
                    ));
                }
            }
        }
        if problems.is_empty() {
            Ok(dir)
        } else {
            Err(Diagnostics(problems))
        }
    }

    pub fn load(path: &Path) -> Result<Self, Diagnostics> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Diagnostics(vec![Diagnostic::error(
                &file,
                Position::UNKNOWN,
                format!("cannot read: {e}"),
            )])
        })?;
        Self::parse(&text, &file)
    }

    /// The directory as YAML, for a host that persists changes.
    pub fn to_yaml(&self) -> Result<String, serde_saphyr::ser::Error> {
        serde_saphyr::to_string(self)
    }

    /// Writes the directory to `path` atomically (a temporary file renamed over it), so a
    /// crash never leaves half a file. Comments in the original file are not kept.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let yaml = self
            .to_yaml()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let tmp = path.with_extension("yaml.tmp");
        std::fs::write(
            &tmp,
            format!("# Customer data for the IVR; written by santral.\n{yaml}"),
        )?;
        std::fs::rename(&tmp, path)
    }

    fn find(&self, number: &str) -> Option<usize> {
        self.customers.iter().position(|c| c.number == number)
    }

    /// Answers a lookup; `block_card` changes the directory (the caller persists it).
    pub fn answer(&mut self, request: &LookupRequest) -> LookupOutcome {
        let customer = request.customer.as_deref().unwrap_or_default();
        let index = match request.action {
            LookupAction::FetchByCaller => self
                .customers
                .iter()
                .position(|c| c.phone.as_deref() == Some(request.caller.as_str())),
            _ => self.find(customer),
        };
        let Some(index) = index else {
            return LookupOutcome::NotFound;
        };
        match request.action {
            LookupAction::Verify => {
                let pin = request
                    .pin
                    .as_ref()
                    .map(|p| p.text.as_str())
                    .unwrap_or_default();
                if !same_secret(&self.customers[index].pin, pin) {
                    return LookupOutcome::NotFound;
                }
            }
            LookupAction::BlockCard => {
                let card = self.customers[index]
                    .cards
                    .iter_mut()
                    .find(|c| match &request.card {
                        Some(last4) if !last4.is_empty() => &c.last4 == last4,
                        _ => c.status == CardStatus::Active,
                    });
                let Some(card) = card else {
                    return LookupOutcome::NotFound;
                };
                card.status = CardStatus::Blocked;
                let last4 = card.last4.clone();
                let mut fields = self.fields(index);
                fields.insert("card_last4".into(), last4);
                fields.insert("card_status".into(), "blocked".into());
                return LookupOutcome::Found(fields);
            }
            LookupAction::Fetch | LookupAction::FetchByCaller => {}
        }
        LookupOutcome::Found(self.fields(index))
    }

    fn fields(&self, index: usize) -> BTreeMap<String, String> {
        let c = &self.customers[index];
        let mut fields = BTreeMap::new();
        fields.insert("number".into(), c.number.clone());
        fields.insert("name".into(), c.name.clone());
        if let Some(language) = &c.language {
            fields.insert("language".into(), language.clone());
        }
        let active: Vec<&Card> = c
            .cards
            .iter()
            .filter(|k| k.status == CardStatus::Active)
            .collect();
        fields.insert("active_cards".into(), active.len().to_string());
        if let Some(card) = active.first().copied().or(c.cards.first()) {
            fields.insert("card_last4".into(), card.last4.clone());
            fields.insert("card_status".into(), card.status.name().into());
        }
        fields
    }

    pub fn customer(&self, number: &str) -> Option<&Customer> {
        self.find(number).map(|i| &self.customers[i])
    }
}
