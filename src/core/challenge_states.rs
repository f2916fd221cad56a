//! A user's challenge states by challenge id: the map the evaluator looks up for every
//! challenge an action counts toward.
//!
//! Why not a `BTreeMap<u32, ChallengeState>`: the evaluator inserts a state for every
//! challenge a user starts, and a B-tree's insert moves up to a node's worth of states (each
//! ~100 bytes with its inline trigger progress) and allocates a node every few inserts; a
//! lookup chases node pointers through state that is rarely in cache. Here the states are
//! appended to one vector and found through a small sorted index of `(id, slot)` pairs: a
//! lookup is a binary search over 8-byte entries, an insert moves index entries only.
//!
//! It reads, iterates, compares, prints and serializes as the `BTreeMap` did (in id order,
//! as a map), so stored rows and every output are unchanged.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;

use super::state::ChallengeState;

#[derive(Clone, Default)]
pub struct ChallengeStates {
    /// `(challenge id, slot in states)`, sorted by id; ids are unique.
    index: Vec<(u32, u32)>,
    /// In the order they were added (compacted in id order by [`ChallengeStates::retain`]).
    states: Vec<ChallengeState>,
}

impl ChallengeStates {
    /// Hints the index and the first states (see [`crate::core::prefetch`]): what every
    /// action of the user reads first.
    pub fn prefetch(&self) {
        crate::core::prefetch::slice(&self.index, 2);
        crate::core::prefetch::slice(&self.states, 8);
    }

    /// Room for `n` states without growing: a stored row says how many it holds, and its
    /// reading grew both vectors four times for a user of ten challenges.
    pub fn with_capacity(n: usize) -> Self {
        ChallengeStates {
            index: Vec::with_capacity(n),
            states: Vec::with_capacity(n),
        }
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    fn find(&self, id: u32) -> Result<usize, usize> {
        self.index.binary_search_by_key(&id, |&(key, _)| key)
    }

    pub fn get(&self, id: &u32) -> Option<&ChallengeState> {
        let i = self.find(*id).ok()?;
        self.states.get(self.index[i].1 as usize)
    }

    pub fn get_mut(&mut self, id: &u32) -> Option<&mut ChallengeState> {
        let i = self.find(*id).ok()?;
        self.states.get_mut(self.index[i].1 as usize)
    }

    pub fn contains_key(&self, id: &u32) -> bool {
        self.find(*id).is_ok()
    }

    /// The state of challenge `id`, for [`Entry::or_default`] (the `BTreeMap` idiom).
    pub fn entry(&mut self, id: u32) -> Entry<'_> {
        Entry { map: self, id }
    }

    /// Sets the state of challenge `id`, returning the one it replaces.
    pub fn insert(&mut self, id: u32, state: ChallengeState) -> Option<ChallengeState> {
        match self.find(id) {
            Ok(i) => {
                let slot = self.index[i].1 as usize;
                self.states
                    .get_mut(slot)
                    .map(|old| std::mem::replace(old, state))
            }
            Err(i) => {
                self.add_at(i, id, state);
                None
            }
        }
    }

    /// Adds a state for an id absent from the index, whose sorted position is `i`.
    fn add_at(&mut self, i: usize, id: u32, state: ChallengeState) -> &mut ChallengeState {
        // A user cannot hold 2^32 challenges: each is a catalog challenge with a distinct id.
        let slot = u32::try_from(self.states.len()).unwrap_or(u32::MAX);
        self.index.insert(i, (id, slot));
        self.states.push(state);
        let last = self.states.len() - 1;
        &mut self.states[last]
    }

    /// The states in id order.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            index: self.index.iter(),
            states: &self.states,
        }
    }

    pub fn keys(&self) -> impl ExactSizeIterator<Item = &u32> + DoubleEndedIterator + '_ {
        self.index.iter().map(|(id, _)| id)
    }

    pub fn values(
        &self,
    ) -> impl ExactSizeIterator<Item = &ChallengeState> + DoubleEndedIterator + '_ {
        self.iter().map(|(_, state)| state)
    }

    /// Keeps the states for which `keep` is true (visited in id order).
    pub fn retain(&mut self, mut keep: impl FnMut(&u32, &mut ChallengeState) -> bool) {
        let mut old: Vec<Option<ChallengeState>> = std::mem::take(&mut self.states)
            .into_iter()
            .map(Some)
            .collect();
        for (id, slot) in std::mem::take(&mut self.index) {
            if let Some(mut state) = old.get_mut(slot as usize).and_then(Option::take) {
                if keep(&id, &mut state) {
                    let i = self.index.len();
                    self.add_at(i, id, state);
                }
            }
        }
    }
}

/// A challenge's place in [`ChallengeStates`], present or not.
pub struct Entry<'a> {
    map: &'a mut ChallengeStates,
    id: u32,
}

impl<'a> Entry<'a> {
    /// The challenge's state, added as the default (active, no progress) when absent.
    pub fn or_default(self) -> &'a mut ChallengeState {
        match self.map.find(self.id) {
            Ok(i) => {
                let slot = self.map.index[i].1 as usize;
                &mut self.map.states[slot]
            }
            Err(i) => self.map.add_at(i, self.id, ChallengeState::default()),
        }
    }
}

impl std::ops::Index<&u32> for ChallengeStates {
    type Output = ChallengeState;

    /// Like a map's index: for tests and callers that know the challenge is there.
    fn index(&self, id: &u32) -> &ChallengeState {
        match self.get(id) {
            Some(state) => state,
            None => panic!("no state for challenge {id}"),
        }
    }
}

/// The states of a [`ChallengeStates`] in id order, with their ids.
pub struct Iter<'a> {
    index: std::slice::Iter<'a, (u32, u32)>,
    states: &'a [ChallengeState],
}

impl<'a> Iter<'a> {
    fn with_state(&self, entry: &'a (u32, u32)) -> (&'a u32, &'a ChallengeState) {
        let states: &'a [ChallengeState] = self.states;
        // Every slot in the index is a state's position: the two vectors change together.
        (&entry.0, &states[entry.1 as usize])
    }
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a u32, &'a ChallengeState);

    fn next(&mut self) -> Option<Self::Item> {
        let entry = self.index.next()?;
        Some(self.with_state(entry))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.index.size_hint()
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        let entry = self.index.next_back()?;
        Some(self.with_state(entry))
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'a> IntoIterator for &'a ChallengeStates {
    type Item = (&'a u32, &'a ChallengeState);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl FromIterator<(u32, ChallengeState)> for ChallengeStates {
    /// Later states of the same id replace earlier ones, as in a map.
    fn from_iter<I: IntoIterator<Item = (u32, ChallengeState)>>(states: I) -> Self {
        let mut map = ChallengeStates::default();
        for (id, state) in states {
            map.insert(id, state);
        }
        map
    }
}

impl From<BTreeMap<u32, ChallengeState>> for ChallengeStates {
    fn from(states: BTreeMap<u32, ChallengeState>) -> Self {
        states.into_iter().collect()
    }
}

impl PartialEq for ChallengeStates {
    /// Equal when they hold the same states under the same ids, whatever the insertion order.
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl std::fmt::Debug for ChallengeStates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for ChallengeStates {
    /// A map in id order: what a `BTreeMap<u32, ChallengeState>` wrote.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for ChallengeStates {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        BTreeMap::<u32, ChallengeState>::deserialize(deserializer).map(Self::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn won(wins: u32) -> ChallengeState {
        ChallengeState {
            wins,
            ..ChallengeState::default()
        }
    }

    /// Whatever the order of inserts, lookups, iteration and the serialized form are those of
    /// the `BTreeMap` it replaces.
    #[test]
    fn behaves_as_the_btree_map_it_replaces() {
        let ids = [7u32, 3, 100, 1, 42, 3, u32::MAX, 0];
        let mut map = ChallengeStates::default();
        let mut expected = BTreeMap::new();
        for (n, id) in ids.into_iter().enumerate() {
            let n = n as u32;
            map.entry(id).or_default().wins += n + 1;
            expected
                .entry(id)
                .or_insert_with(ChallengeState::default)
                .wins += n + 1;
        }
        assert_eq!(map.len(), expected.len());
        assert!(map.iter().eq(expected.iter()));
        assert_eq!(map.get(&3), expected.get(&3));
        assert_eq!(map.get(&4), None);
        assert!(map.contains_key(&u32::MAX) && !map.contains_key(&8));
        assert_eq!(
            serde_json::to_string(&map).unwrap(),
            serde_json::to_string(&expected).unwrap()
        );
        assert_eq!(format!("{map:?}"), format!("{expected:?}"));
        let back: ChallengeStates =
            serde_json::from_str(&serde_json::to_string(&expected).unwrap()).unwrap();
        assert_eq!(back, map);
        assert_eq!(ChallengeStates::from(expected.clone()), map);

        map.retain(|id, state| {
            state.period_wins = 1;
            id % 2 == 1
        });
        expected.retain(|id, state| {
            state.period_wins = 1;
            id % 2 == 1
        });
        assert!(map.iter().eq(expected.iter()));
        assert_eq!(map.insert(7, won(9)), expected.insert(7, won(9)));
        assert_eq!(map.insert(8, won(9)), expected.insert(8, won(9)));
        assert!(map.keys().eq(expected.keys()));
        assert!(map.values().eq(expected.values()));
        assert_eq!(map[&8], expected[&8]);
    }

    /// One operation of the model test; ids from a small range so that they repeat.
    #[derive(Debug, Clone)]
    enum Op {
        Bump(u32),
        Insert(u32, u32),
        Retain(u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u32..40).prop_map(Op::Bump),
            2 => (0u32..40, 0u32..5).prop_map(|(id, w)| Op::Insert(id, w)),
            1 => (2u32..5).prop_map(Op::Retain),
        ]
    }

    proptest! {
        /// Any sequence of the operations the evaluator uses leaves the same contents, the
        /// same order and the same JSON as the `BTreeMap` would.
        #[test]
        fn any_operations_match_the_btree_map(ops in proptest::collection::vec(op(), 0..120)) {
            let mut map = ChallengeStates::default();
            let mut model: BTreeMap<u32, ChallengeState> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Bump(id) => {
                        map.entry(id).or_default().wins += 1;
                        model.entry(id).or_default().wins += 1;
                    }
                    Op::Insert(id, w) => {
                        prop_assert_eq!(map.insert(id, won(w)), model.insert(id, won(w)));
                    }
                    Op::Retain(m) => {
                        map.retain(|id, s| { s.period_wins += 1; id % m != 0 });
                        model.retain(|id, s| { s.period_wins += 1; id % m != 0 });
                    }
                }
                prop_assert_eq!(map.len(), model.len());
                for id in 0..40 {
                    prop_assert_eq!(map.get(&id), model.get(&id));
                }
            }
            prop_assert!(map.iter().eq(model.iter()));
            prop_assert!(map.iter().rev().eq(model.iter().rev()));
            prop_assert_eq!(
                serde_json::to_string(&map).unwrap(),
                serde_json::to_string(&model).unwrap()
            );
            prop_assert_eq!(map, ChallengeStates::from(model));
        }
    }

    #[test]
    fn equality_ignores_insertion_order() {
        let a: ChallengeStates = [(1, won(1)), (2, won(2))].into_iter().collect();
        let b: ChallengeStates = [(2, won(2)), (1, won(1))].into_iter().collect();
        assert_eq!(a, b);
        let c: ChallengeStates = [(2, won(2)), (1, won(3))].into_iter().collect();
        assert_ne!(a, c);
    }
}
