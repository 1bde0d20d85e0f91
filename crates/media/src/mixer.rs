//! N-party conference mixer on 20 ms frames. Each party hears everyone who speaks to the room
//! except itself. Supervisors join as listeners (hear all, heard by none), whisperers (heard
//! only by one party, the agent) or ordinary speakers (barge). Buffers are allocated when a
//! party joins; mixing allocates nothing.

use crate::codec::{FRAME_SAMPLES, Frame};

/// Party handle.
pub type PartyId = u32;

/// Who hears a party.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// Everyone else (normal participant, supervisor barge).
    Everyone,
    /// Only this party (supervisor whisper to the agent).
    Only(PartyId),
    /// Nobody (supervisor listen).
    Nobody,
}

#[derive(Debug, Clone)]
struct Party {
    id: PartyId,
    audience: Audience,
    input: Frame,
    output: Frame,
}

/// The mixer.
#[derive(Debug, Clone, Default)]
pub struct Mixer {
    parties: Vec<Party>,
}

impl Mixer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn join(&mut self, id: PartyId, audience: Audience) {
        self.leave(id);
        self.parties.push(Party {
            id,
            audience,
            input: [0; FRAME_SAMPLES],
            output: [0; FRAME_SAMPLES],
        });
    }

    pub fn leave(&mut self, id: PartyId) {
        self.parties.retain(|p| p.id != id);
    }

    pub fn set_audience(&mut self, id: PartyId, audience: Audience) {
        if let Some(party) = self.parties.iter_mut().find(|p| p.id == id) {
            party.audience = audience;
        }
    }

    pub fn len(&self) -> usize {
        self.parties.len()
    }

    pub fn is_empty(&self) -> bool {
        self.parties.is_empty()
    }

    /// Sets what `id` said this tick.
    pub fn set_input(&mut self, id: PartyId, frame: &Frame) {
        if let Some(party) = self.parties.iter_mut().find(|p| p.id == id) {
            party.input = *frame;
        }
    }

    /// Mixes one tick; then read each party's [`Mixer::output`].
    pub fn mix(&mut self) {
        let mut room = [0i32; FRAME_SAMPLES];
        for party in self
            .parties
            .iter()
            .filter(|p| p.audience == Audience::Everyone)
        {
            for (sum, sample) in room.iter_mut().zip(party.input.iter()) {
                *sum += *sample as i32;
            }
        }
        for index in 0..self.parties.len() {
            let id = self.parties[index].id;
            let own_in_room = self.parties[index].audience == Audience::Everyone;
            let mut mixed = room;
            if own_in_room {
                for (sum, sample) in mixed.iter_mut().zip(self.parties[index].input.iter()) {
                    *sum -= *sample as i32;
                }
            }
            for whisperer in self
                .parties
                .iter()
                .filter(|p| p.audience == Audience::Only(id) && p.id != id)
            {
                for (sum, sample) in mixed.iter_mut().zip(whisperer.input.iter()) {
                    *sum += *sample as i32;
                }
            }
            let output = &mut self.parties[index].output;
            for (out, sum) in output.iter_mut().zip(mixed.iter()) {
                *out = (*sum).clamp(i16::MIN as i32, i16::MAX as i32) as i16;
            }
        }
    }

    /// What `id` hears this tick.
    pub fn output(&self, id: PartyId) -> Option<&Frame> {
        self.parties.iter().find(|p| p.id == id).map(|p| &p.output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(value: i16) -> Frame {
        [value; FRAME_SAMPLES]
    }

    fn heard(mixer: &Mixer, id: PartyId) -> i16 {
        mixer.output(id).map(|f| f[0]).unwrap_or(i16::MIN)
    }

    #[test]
    fn each_party_hears_all_others_but_itself() {
        let mut mixer = Mixer::new();
        for (id, value) in [(1, 100), (2, 20), (3, 3)] {
            mixer.join(id, Audience::Everyone);
            mixer.set_input(id, &level(value));
        }
        mixer.mix();
        assert_eq!(
            (heard(&mixer, 1), heard(&mixer, 2), heard(&mixer, 3)),
            (23, 103, 120)
        );
    }

    #[test]
    fn supervisor_listen_whisper_and_barge() {
        let (caller, agent, supervisor) = (1, 2, 3);
        let mut mixer = Mixer::new();
        mixer.join(caller, Audience::Everyone);
        mixer.join(agent, Audience::Everyone);
        mixer.join(supervisor, Audience::Nobody);
        mixer.set_input(caller, &level(100));
        mixer.set_input(agent, &level(20));
        mixer.set_input(supervisor, &level(3));
        mixer.mix();
        assert_eq!(
            (
                heard(&mixer, caller),
                heard(&mixer, agent),
                heard(&mixer, supervisor)
            ),
            (20, 100, 120),
            "listen"
        );
        mixer.set_audience(supervisor, Audience::Only(agent));
        mixer.mix();
        assert_eq!(
            (
                heard(&mixer, caller),
                heard(&mixer, agent),
                heard(&mixer, supervisor)
            ),
            (20, 103, 120),
            "whisper"
        );
        mixer.set_audience(supervisor, Audience::Everyone);
        mixer.mix();
        assert_eq!(
            (
                heard(&mixer, caller),
                heard(&mixer, agent),
                heard(&mixer, supervisor)
            ),
            (23, 103, 120),
            "barge"
        );
        mixer.leave(supervisor);
        assert_eq!(mixer.len(), 2);
        assert_eq!(mixer.output(supervisor), None);
    }

    #[test]
    fn loud_sums_clip_instead_of_wrapping() {
        let mut mixer = Mixer::new();
        for id in 1..=4 {
            mixer.join(id, Audience::Everyone);
            mixer.set_input(id, &level(30000));
        }
        mixer.mix();
        assert_eq!(heard(&mixer, 1), i16::MAX);
    }
}
