//! Telling noise from regressions: how often each field differs over the last pairs.
//!
//! For each (rule, target), the window is the last `noise.window` pairs whose heads were compared
//! with equal statuses. A field is *noise* when the window holds at least `noise.min_pairs` pairs
//! in which it was compared and it differs in at least `noise.threshold` of them (a share, 0.9 by
//! default): a timestamp or generated id differs in nearly every pair, a regression in some. A
//! header is compared in every pair of the window, a body field only in those whose bodies were
//! compared, so each is measured against its own count. Differences of noisy fields go on being
//! counted (else a noisy field would drop out of its own measure and swing back); with
//! `ignore_noisy` they leave verdicts.
//!
//! The window is exact, not a decaying estimate: a ring of the pairs, each with the numbers of
//! the fields it differed in (at most [`super::differences::MAX_SHAPES`] + 1), and a count per
//! field of the pairs in the window it differed in. Recording a pair is O(its differing fields);
//! the pair leaving the window takes its counts with it. Fields are numbered in a table of at
//! most [`MAX_FIELDS`]; a field whose count fell to zero gives its number up to a new one, and
//! when every number is in use, new fields are counted together as [`OTHER_FIELDS`] (never
//! noise). Memory: the table, and two bytes per differing field per pair of the window.

use std::collections::{HashMap, VecDeque};

use crate::config;

/// Distinct fields tracked per (rule, target), [`OTHER_FIELDS`] included.
pub const MAX_FIELDS: usize = 256;

/// The name under which fields beyond [`MAX_FIELDS`] (or beyond a pair's shapes) are counted.
pub const OTHER_FIELDS: &str = "(other fields)";

/// The number of [`OTHER_FIELDS`].
pub(super) const OTHER: u16 = 0;

/// A field's number in the table.
pub(super) type FieldId = u16;

struct Field {
    name: String,
    /// A body field (measured against pairs with compared bodies), else a header.
    in_body: bool,
    /// Pairs of the window it differs in.
    in_window: u32,
    /// Pairs it differed in since it was first tracked (under this number).
    total: u64,
}

/// A pair in the window.
#[derive(Clone, Copy)]
struct Entry {
    /// How many numbers of `ids` are this pair's.
    fields: u8,
    bodies_compared: bool,
}

pub(super) struct Noise {
    settings: config::Noise,
    fields: Vec<Field>,
    index: HashMap<String, FieldId>,
    /// Numbers whose count fell to zero (some may have been hit since: checked when taken).
    idle: Vec<FieldId>,
    window: VecDeque<Entry>,
    ids: VecDeque<FieldId>,
    /// Pairs of the window whose bodies were compared.
    body_pairs: u32,
}

/// A field's standing, for the report.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct FieldStanding {
    pub name: String,
    pub differing_pairs: u32,
    pub compared_pairs: u32,
    pub noise: bool,
    pub total: u64,
}

impl Noise {
    pub fn new(settings: &config::Noise) -> Self {
        Self {
            settings: settings.clone(),
            fields: vec![Field {
                name: OTHER_FIELDS.to_string(),
                in_body: false,
                in_window: 0,
                total: 0,
            }],
            index: HashMap::new(),
            idle: Vec::new(),
            window: VecDeque::new(),
            ids: VecDeque::new(),
            body_pairs: 0,
        }
    }

    /// The number of the field `name`, numbering it if it is new; [`OTHER`] when the table is
    /// full.
    pub fn field(&mut self, name: &str, in_body: bool) -> FieldId {
        if let Some(&id) = self.index.get(name) {
            return id;
        }
        let fresh = || Field {
            name: name.to_string(),
            in_body,
            in_window: 0,
            total: 0,
        };
        if self.fields.len() < MAX_FIELDS {
            self.fields.push(fresh());
            let id = (self.fields.len() - 1) as FieldId;
            self.index.insert(name.to_string(), id);
            return id;
        }
        while let Some(id) = self.idle.pop() {
            let slot = &mut self.fields[usize::from(id)];
            if slot.in_window == 0 && id != OTHER {
                self.index.remove(&slot.name);
                *slot = fresh();
                self.index.insert(name.to_string(), id);
                return id;
            }
        }
        OTHER
    }

    /// Pairs of the window in which `id` was compared.
    fn compared_pairs(&self, id: FieldId) -> u32 {
        if self.fields[usize::from(id)].in_body {
            self.body_pairs
        } else {
            self.window.len() as u32
        }
    }

    /// Whether field `id` is noise now.
    pub fn is_noise(&self, id: FieldId) -> bool {
        if id == OTHER {
            return false;
        }
        let compared = self.compared_pairs(id);
        compared >= self.settings.min_pairs
            && f64::from(self.fields[usize::from(id)].in_window)
                >= self.settings.threshold * f64::from(compared)
    }

    /// Whether noisy fields leave verdicts.
    pub fn ignore_noisy(&self) -> bool {
        self.settings.ignore_noisy
    }

    /// Adds a pair that differed in `ids` (distinct numbers) to the window, and lets the oldest
    /// pair go when the window is full.
    pub fn record(&mut self, ids: &[FieldId], bodies_compared: bool) {
        for &id in ids {
            let field = &mut self.fields[usize::from(id)];
            field.in_window += 1;
            field.total += 1;
        }
        self.ids.extend(ids);
        self.window.push_back(Entry {
            fields: ids.len() as u8,
            bodies_compared,
        });
        self.body_pairs += u32::from(bodies_compared);
        while self.window.len() > self.settings.window as usize {
            let Some(oldest) = self.window.pop_front() else {
                break;
            };
            self.body_pairs -= u32::from(oldest.bodies_compared);
            for _ in 0..oldest.fields {
                let Some(id) = self.ids.pop_front() else {
                    break;
                };
                let field = &mut self.fields[usize::from(id)];
                field.in_window -= 1;
                if field.in_window == 0 {
                    self.idle.push(id);
                }
            }
        }
    }

    /// Pairs in the window, and those of them whose bodies were compared.
    pub fn window(&self) -> (u32, u32) {
        (self.window.len() as u32, self.body_pairs)
    }

    /// The fields that differ in the window, most often first.
    pub fn standings(&self) -> Vec<FieldStanding> {
        let mut standings: Vec<FieldStanding> = self
            .fields
            .iter()
            .enumerate()
            .filter(|(_, field)| field.in_window > 0)
            .map(|(id, field)| FieldStanding {
                name: field.name.clone(),
                differing_pairs: field.in_window,
                compared_pairs: self.compared_pairs(id as FieldId),
                noise: self.is_noise(id as FieldId),
                total: field.total,
            })
            .collect();
        standings.sort_by(|a, b| {
            let rate = |s: &FieldStanding| {
                f64::from(s.differing_pairs) / f64::from(s.compared_pairs.max(1))
            };
            rate(b)
                .total_cmp(&rate(a))
                .then_with(|| a.name.cmp(&b.name))
        });
        standings
    }

    /// Numbers in use, for tests of the bound.
    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.index.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(threshold: f64, min_pairs: u32, window: u32) -> config::Noise {
        config::Noise {
            threshold,
            min_pairs,
            window,
            ignore_noisy: true,
        }
    }

    #[test]
    fn a_field_differing_in_every_pair_is_noise_and_one_in_two_percent_is_not() {
        let mut noise = Noise::new(&settings(0.9, 20, 1000));
        for i in 0..1000 {
            let mut ids = vec![noise.field("/generated_at", true)];
            if i % 50 == 0 {
                ids.push(noise.field("/price", true));
            }
            noise.record(&ids, true);
        }
        let generated = noise.field("/generated_at", true);
        let price = noise.field("/price", true);
        assert!(noise.is_noise(generated));
        assert!(!noise.is_noise(price));
        let standings = noise.standings();
        assert_eq!(
            standings,
            vec![
                FieldStanding {
                    name: "/generated_at".into(),
                    differing_pairs: 1000,
                    compared_pairs: 1000,
                    noise: true,
                    total: 1000,
                },
                FieldStanding {
                    name: "/price".into(),
                    differing_pairs: 20,
                    compared_pairs: 1000,
                    noise: false,
                    total: 20,
                },
            ]
        );
    }

    #[test]
    fn nothing_is_noise_before_min_pairs_and_the_threshold_is_inclusive() {
        let mut noise = Noise::new(&settings(0.9, 20, 100));
        let id = noise.field("header:etag", false);
        for _ in 0..19 {
            noise.record(&[id], false);
        }
        assert!(!noise.is_noise(id), "19 pairs < min_pairs");
        noise.record(&[id], false);
        assert!(noise.is_noise(id), "20 of 20");
        // 18 of 20 is exactly 0.9.
        let mut noise = Noise::new(&settings(0.9, 20, 20));
        let id = noise.field("/t", true);
        for i in 0..20 {
            let ids: &[FieldId] = if i < 2 { &[] } else { &[id] };
            noise.record(ids, true);
        }
        assert!(noise.is_noise(id));
        // The first two pairs to leave the window did not differ; the third did.
        for _ in 0..3 {
            noise.record(&[], true);
        }
        assert!(!noise.is_noise(id), "17 of 20");
    }

    #[test]
    fn the_window_slides_and_body_fields_count_only_pairs_with_compared_bodies() {
        let mut noise = Noise::new(&settings(0.9, 10, 50));
        let id = noise.field("/ts", true);
        // 50 pairs with bodies over the cap, then 10 with compared bodies, all differing.
        for _ in 0..50 {
            noise.record(&[], false);
        }
        for _ in 0..10 {
            noise.record(&[id], true);
        }
        assert_eq!(noise.window(), (50, 10));
        assert!(noise.is_noise(id), "10 of 10 compared bodies");
        // 50 equal pairs push the differing ones out of the window.
        for _ in 0..50 {
            noise.record(&[], true);
        }
        assert_eq!(noise.window(), (50, 50));
        assert!(!noise.is_noise(id));
        assert!(noise.standings().is_empty());
    }

    #[test]
    fn memory_stays_bounded_under_endless_distinct_fields() {
        let mut noise = Noise::new(&settings(0.9, 20, 100));
        for i in 0..10_000 {
            let ids: Vec<FieldId> = (0..3)
                .map(|j| noise.field(&format!("/users/u{i}-{j}/name"), true))
                .collect();
            let mut distinct = ids.clone();
            distinct.dedup();
            noise.record(&distinct, true);
        }
        assert!(noise.tracked() < MAX_FIELDS, "{}", noise.tracked());
        assert!(noise.ids.len() <= 100 * 3);
        assert_eq!(noise.window(), (100, 100));
        // Every number is in use by the window's 300 fields: the newest went to OTHER_FIELDS,
        // which is never noise, and is reported.
        let standings = noise.standings();
        let other = standings
            .iter()
            .find(|s| s.name == OTHER_FIELDS)
            .expect("other fields reported");
        assert!(!other.noise && other.differing_pairs > 0, "{other:?}");
        assert!(standings.len() <= MAX_FIELDS);
        // Once those fields are out of the window, their numbers serve new fields.
        for _ in 0..100 {
            noise.record(&[], true);
        }
        assert_ne!(noise.field("/fresh", true), OTHER);
    }
}
