//! The routing index. Agents and calls meet in *groups*: one group per (queue, requirement), where a
//! requirement is what an agent must have to take the call at its current escalation stage. A
//! group holds its logged-in member agents, the routable (available) ones ordered by the queue's
//! strategy key, and its waiting calls ordered by priority then place in line. Groups are found
//! through the skills they mention, so neither a call nor an agent ever scans all agents or calls:
//! a call looks at the first entry of one ordered set; an agent at the head of each of its groups.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, HashSet};

use crate::id::CallId;

pub(crate) type SkillIx = u32;
pub(crate) type LangIx = u32;
pub(crate) type AgentIx = usize;
pub(crate) type GroupIx = usize;
pub(crate) type QueueIx = usize;

/// Position in line: higher priority first, then join order.
pub(crate) type CallKey = (Reverse<u8>, u64, CallId);
/// Strategy order key: smaller is offered first.
pub(crate) type AgentKey = (u64, u64, AgentIx);

/// Interns names (skills, languages) to small numbers.
#[derive(Debug, Default)]
pub(crate) struct Interner {
    ids: HashMap<String, u32>,
}

impl Interner {
    pub(crate) fn intern(&mut self, name: &str) -> u32 {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        let id = u32::try_from(self.ids.len()).unwrap_or(u32::MAX);
        self.ids.insert(name.to_owned(), id);
        id
    }
}

/// What an agent needs: any one of the skill sets (each: all its skills at their minimum level)
/// and, when `languages` is not empty, one of those languages.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Requirement {
    pub(crate) alternatives: Vec<Vec<(SkillIx, u8)>>,
    pub(crate) languages: Vec<LangIx>,
}

impl Requirement {
    /// Sorts and deduplicates, so equal requirements hash equal.
    pub(crate) fn normalize(mut self) -> Self {
        for alt in &mut self.alternatives {
            alt.sort_unstable();
            // Keep the highest minimum per skill.
            let mut merged: Vec<(SkillIx, u8)> = Vec::with_capacity(alt.len());
            for (skill, level) in alt.drain(..) {
                match merged.last_mut() {
                    Some((s, l)) if *s == skill => *l = (*l).max(level),
                    _ => merged.push((skill, level)),
                }
            }
            *alt = merged;
        }
        self.alternatives.sort();
        self.alternatives.dedup();
        self.languages.sort_unstable();
        self.languages.dedup();
        self
    }

    pub(crate) fn matches(&self, skills: &[(SkillIx, u8)], languages: &[LangIx]) -> bool {
        let language_ok =
            self.languages.is_empty() || self.languages.iter().any(|l| languages.contains(l));
        language_ok
            && self.alternatives.iter().any(|alt| {
                alt.iter().all(|(skill, min)| {
                    skills
                        .binary_search_by_key(skill, |(s, _)| *s)
                        .is_ok_and(|i| skills[i].1 >= *min)
                })
            })
    }

    /// Sum of the agent's levels over the skills of the first alternative it matches.
    pub(crate) fn skill_score(&self, skills: &[(SkillIx, u8)]) -> u64 {
        let level = |skill: &SkillIx| {
            skills
                .binary_search_by_key(skill, |(s, _)| *s)
                .map_or(0, |i| u64::from(skills[i].1))
        };
        self.alternatives
            .iter()
            .map(|alt| alt.iter().map(|(s, _)| level(s)).sum::<u64>())
            .max()
            .unwrap_or(0)
    }

    fn skills(&self) -> impl Iterator<Item = SkillIx> + '_ {
        self.alternatives.iter().flatten().map(|(s, _)| *s)
    }

    fn needs_no_skill(&self) -> bool {
        self.alternatives.iter().any(|alt| alt.is_empty())
    }
}

#[derive(Debug)]
pub(crate) struct Group {
    pub(crate) queue: QueueIx,
    pub(crate) requirement: Requirement,
    /// Logged-in agents meeting the requirement.
    pub(crate) members: HashSet<AgentIx>,
    /// Members neither paused nor logged out.
    pub(crate) staffed: usize,
    /// Routable members in strategy order.
    pub(crate) available: BTreeSet<AgentKey>,
    pub(crate) waiting: BTreeSet<CallKey>,
}

/// All groups, found by (queue, requirement) and by skill.
#[derive(Debug, Default)]
pub(crate) struct Groups {
    pub(crate) list: Vec<Group>,
    lookup: HashMap<(QueueIx, Requirement), GroupIx>,
    by_skill: HashMap<SkillIx, Vec<GroupIx>>,
    skill_free: Vec<GroupIx>,
    /// Logged-in agents by skill, to fill a new group.
    agents_by_skill: HashMap<SkillIx, HashSet<AgentIx>>,
    logged_in: HashSet<AgentIx>,
}

impl Groups {
    /// The group for this queue and requirement, made (and filled with the logged-in agents that
    /// match) on first use. Returns the group and the agents newly made members.
    pub(crate) fn get_or_create(
        &mut self,
        queue: QueueIx,
        requirement: Requirement,
        qualifies: impl Fn(AgentIx, &Requirement) -> bool,
    ) -> (GroupIx, Vec<AgentIx>) {
        if let Some(ix) = self.lookup.get(&(queue, requirement.clone())) {
            return (*ix, Vec::new());
        }
        let ix = self.list.len();
        let mut candidates: HashSet<AgentIx> = HashSet::new();
        if requirement.needs_no_skill() {
            candidates.extend(self.logged_in.iter().copied());
        } else {
            // Per alternative, only the agents holding its first skill are candidates.
            for alt in &requirement.alternatives {
                if let Some((first, _)) = alt.first()
                    && let Some(agents) = self.agents_by_skill.get(first)
                {
                    candidates.extend(agents.iter().copied());
                }
            }
        }
        let members: Vec<AgentIx> = candidates
            .into_iter()
            .filter(|a| qualifies(*a, &requirement))
            .collect();
        if requirement.needs_no_skill() {
            self.skill_free.push(ix);
        }
        let mut seen = HashSet::new();
        for skill in requirement.skills() {
            if seen.insert(skill) {
                self.by_skill.entry(skill).or_default().push(ix);
            }
        }
        self.lookup.insert((queue, requirement.clone()), ix);
        self.list.push(Group {
            queue,
            requirement,
            members: HashSet::new(),
            staffed: 0,
            available: BTreeSet::new(),
            waiting: BTreeSet::new(),
        });
        (ix, members)
    }

    /// Groups an agent with these skills and languages belongs to.
    pub(crate) fn matching(&self, skills: &[(SkillIx, u8)], languages: &[LangIx]) -> Vec<GroupIx> {
        let mut candidates: Vec<GroupIx> = self.skill_free.clone();
        for (skill, _) in skills {
            if let Some(groups) = self.by_skill.get(skill) {
                candidates.extend(groups.iter().copied());
            }
        }
        candidates.sort_unstable();
        candidates.dedup();
        candidates.retain(|g| self.list[*g].requirement.matches(skills, languages));
        candidates
    }

    pub(crate) fn note_login(&mut self, agent: AgentIx, skills: &[(SkillIx, u8)]) {
        self.logged_in.insert(agent);
        for (skill, _) in skills {
            self.agents_by_skill
                .entry(*skill)
                .or_default()
                .insert(agent);
        }
    }

    pub(crate) fn note_logout(&mut self, agent: AgentIx, skills: &[(SkillIx, u8)]) {
        self.logged_in.remove(&agent);
        for (skill, _) in skills {
            if let Some(set) = self.agents_by_skill.get_mut(skill) {
                set.remove(&agent);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirement_matches_levels_alternatives_and_languages() {
        let req = Requirement {
            alternatives: vec![vec![(1, 5), (2, 3)], vec![(7, 2)]],
            languages: vec![4, 3],
        }
        .normalize();
        assert_eq!(req.languages, [3, 4]);
        assert!(req.matches(&[(1, 5), (2, 3)], &[3]));
        assert!(!req.matches(&[(1, 4), (2, 9)], &[3]), "level 4 < 5");
        assert!(!req.matches(&[(1, 5), (2, 3)], &[9]), "language");
        assert!(req.matches(&[(7, 2)], &[4]), "alternative set");
        assert_eq!(req.skill_score(&[(1, 6), (2, 4), (7, 9)]), 10);
    }

    #[test]
    fn normalize_merges_duplicate_skills_to_the_highest_minimum() {
        let a = Requirement {
            alternatives: vec![vec![(2, 1), (1, 3), (2, 6)]],
            languages: vec![],
        }
        .normalize();
        assert_eq!(a.alternatives, [vec![(1, 3), (2, 6)]]);
        let b = Requirement {
            alternatives: vec![vec![(2, 6), (1, 3)]],
            languages: vec![],
        }
        .normalize();
        assert_eq!(a, b);
        let open = Requirement {
            alternatives: vec![vec![]],
            languages: vec![],
        };
        assert!(open.matches(&[], &[]));
    }

    #[test]
    fn groups_are_found_by_skill() {
        let mut groups = Groups::default();
        groups.note_login(0, &[(1, 5)]);
        groups.note_login(1, &[(2, 5)]);
        let skills = |a: AgentIx| if a == 0 { vec![(1, 5)] } else { vec![(2, 5)] };
        let req = Requirement {
            alternatives: vec![vec![(1, 3)]],
            languages: vec![],
        };
        let (g, members) = groups.get_or_create(0, req.clone(), |a, r| r.matches(&skills(a), &[]));
        assert_eq!(members, [0]);
        let (again, none) = groups.get_or_create(0, req, |_, _| true);
        assert_eq!((again, none.len()), (g, 0));
        assert_eq!(groups.matching(&[(1, 9)], &[]), [g]);
        assert!(groups.matching(&[(2, 9)], &[]).is_empty());
    }
}
