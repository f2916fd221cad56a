//! A user's unclaimed milestones, with their stored row's bytes kept beside them.
//!
//! Why: a user's row is rewritten whole with every batch that touches the user, and the
//! milestones were the costliest part to encode. Each holds its id and its prizes' texts in
//! separate heap strings that the evaluation never touches, so encoding them was a cache
//! miss per string: 7 % of the record step's samples in the end-to-end profile, for at most
//! a few milestones per user. The list changes only when a milestone is won, claimed, or
//! loses a prize, so its encoding is kept after the first write and copied as one block by
//! the writes after it.
//!
//! The kept bytes are opaque here: the binary row codec (`store::state_format`) makes and
//! reads them, and they are dropped whenever the list may change, which is any mutable
//! access ([`DerefMut`]). The list reads, compares, prints and serializes as the `Vec` it
//! wraps, so stored rows and every output are unchanged.

use serde::{Deserialize, Serialize};
use std::ops::{Deref, DerefMut};
use std::sync::OnceLock;

use super::state::Milestone;

#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MilestoneList {
    list: Vec<Milestone>,
    /// The list as the binary row encodes it, made by the first write after a change.
    #[serde(skip)]
    row_bytes: OnceLock<Box<[u8]>>,
}

impl MilestoneList {
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The list's encoding for a stored row: the kept one, or `encode`'s, which is kept.
    /// Only the row codec calls this, always with the same encoder.
    pub fn row_bytes(&self, encode: impl FnOnce(&[Milestone]) -> Vec<u8>) -> &[u8] {
        self.row_bytes
            .get_or_init(|| encode(&self.list).into_boxed_slice())
    }
}

impl Deref for MilestoneList {
    type Target = Vec<Milestone>;

    fn deref(&self) -> &Vec<Milestone> {
        &self.list
    }
}

impl DerefMut for MilestoneList {
    /// Whoever may change the list drops its kept encoding.
    fn deref_mut(&mut self) -> &mut Vec<Milestone> {
        self.row_bytes.take();
        &mut self.list
    }
}

impl From<Vec<Milestone>> for MilestoneList {
    fn from(list: Vec<Milestone>) -> Self {
        MilestoneList {
            list,
            row_bytes: OnceLock::new(),
        }
    }
}

impl PartialEq for MilestoneList {
    fn eq(&self, other: &Self) -> bool {
        self.list == other.list
    }
}

impl std::fmt::Debug for MilestoneList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.list.fmt(f)
    }
}

impl<'a> IntoIterator for &'a MilestoneList {
    type Item = &'a Milestone;
    type IntoIter = std::slice::Iter<'a, Milestone>;

    fn into_iter(self) -> Self::IntoIter {
        self.list.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn milestone(id: &str) -> Milestone {
        Milestone {
            milestone_id: id.into(),
            challenge_id: 7,
            achieved_at: Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap(),
            prizes: Vec::new(),
        }
    }

    fn ids(list: &[Milestone]) -> Vec<u8> {
        list.iter()
            .flat_map(|m| m.milestone_id.bytes().chain([b';']))
            .collect()
    }

    /// Kept bytes are reused until a mutable access, and made again from the list after it.
    #[test]
    fn kept_bytes_last_until_the_list_may_change() {
        let mut list = MilestoneList::from(vec![milestone("a")]);
        assert_eq!(list.row_bytes(ids), b"a;");
        assert_eq!(list.row_bytes(|_| panic!("encoded twice")), b"a;");
        assert_eq!(list.clone().row_bytes(|_| panic!("encoded twice")), b"a;");
        list.push(milestone("b"));
        assert_eq!(list.row_bytes(ids), b"a;b;");
        list.iter_mut().for_each(|m| m.milestone_id += "2");
        assert_eq!(list.row_bytes(ids), b"a2;b2;");
        list.retain(|m| m.milestone_id != "a2");
        assert_eq!(list.row_bytes(ids), b"b2;");
        // Reading leaves them.
        assert_eq!(list.len(), 1);
        assert_eq!(list.iter().count(), 1);
        assert_eq!(list.row_bytes(|_| panic!("encoded twice")), b"b2;");
    }

    /// The list serializes, compares and prints as the `Vec` it wraps, kept bytes or not.
    #[test]
    fn it_is_its_vec_to_serde_equality_and_debug() {
        let list = MilestoneList::from(vec![milestone("a")]);
        let vec = vec![milestone("a")];
        assert_eq!(
            serde_json::to_string(&list).unwrap(),
            serde_json::to_string(&vec).unwrap()
        );
        let back: MilestoneList =
            serde_json::from_str(&serde_json::to_string(&vec).unwrap()).unwrap();
        list.row_bytes(ids);
        assert_eq!(back, list);
        assert_eq!(format!("{list:?}"), format!("{vec:?}"));
    }
}
