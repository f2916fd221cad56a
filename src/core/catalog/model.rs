//! The catalog's types: what the declarative files describe, after validation.
//!
//! The serde shapes here are the catalog language itself (docs/catalog.md, "Reference");
//! `deny_unknown_fields` everywhere so a typo fails `questline check` with its line
//! instead of being silently ignored.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Text with translations: either a plain string or a table of language → text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LocalizedText {
    Plain(String),
    Translated(BTreeMap<String, String>),
}

impl Default for LocalizedText {
    fn default() -> Self {
        LocalizedText::Plain(String::new())
    }
}

impl LocalizedText {
    /// The text in the first acceptable language of an `Accept-Language` list, falling back to
    /// the primary subtag (`ar-EG` → `ar`), then English, then the first translation.
    pub fn pick(&self, languages: &[String]) -> &str {
        match self {
            LocalizedText::Plain(text) => text,
            LocalizedText::Translated(map) => {
                for lang in languages {
                    let lang = lang.to_ascii_lowercase();
                    if let Some(t) = map.get(&lang) {
                        return t;
                    }
                    if let Some((primary, _)) = lang.split_once('-') {
                        if let Some(t) = map.get(primary) {
                            return t;
                        }
                    }
                }
                map.get("en")
                    .or_else(|| map.values().next())
                    .map(String::as_str)
                    .unwrap_or("")
            }
        }
    }

    /// Every translation, for searches that should match in any language.
    pub fn all(&self) -> Vec<&str> {
        match self {
            LocalizedText::Plain(text) => vec![text.as_str()],
            LocalizedText::Translated(map) => map.values().map(String::as_str).collect(),
        }
    }
}

/// Rokwire's reward type: the unit every grant, balance and claim is counted in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewardType {
    pub reward_type: String,
    #[serde(default)]
    pub display_name: LocalizedText,
    #[serde(default = "yes")]
    pub active: bool,
    #[serde(default)]
    pub description: LocalizedText,
    #[serde(default)]
    pub kind: RewardKind,
    /// The admin API's id; one derived from the tenant and name when absent ([`entity_id`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// When the admin API created and last changed it (RFC 3339 strings in files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_created: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_updated: Option<DateTime<Utc>>,
}

/// A stable id for a catalog entity written without one: a name-based UUID of its tenant,
/// kind and name, so every process and every version agree on it.
pub fn entity_id(tenant: &str, kind: &str, name: &str) -> String {
    crate::core::ids::entity_id(kind, tenant, name)
}

/// What a reward is, which decides what a grant carries: an amount, a code, or a badge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RewardKind {
    /// A balance in units (points, coins); unlimited unless an inventory exists.
    #[default]
    Points,
    /// A code drawn from an inventory's pool.
    Voucher,
    /// A badge: granted once per milestone, shown in history.
    Badge,
    /// A physical or digital item counted by an inventory (Rokwire's t-shirt).
    Item,
}

/// Rokwire's inventory: a supply of one reward type, owned by the inventory stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    pub id: String,
    pub reward_type: String,
    #[serde(default = "yes")]
    pub in_stock: bool,
    pub amount_total: u64,
    /// Grants keep succeeding after the stock is gone.
    #[serde(default)]
    pub grant_depleted: bool,
    /// Claims keep succeeding after the stock is gone.
    #[serde(default)]
    pub claim_depleted: bool,
    #[serde(default)]
    pub description: String,
    /// Voucher codes handed out one per grant, in order.
    #[serde(default)]
    pub codes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_created: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_updated: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Category {
    pub id: u32,
    pub name: LocalizedText,
}

/// How a trigger turns actions into progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    /// Values accumulate toward the frequency (Earned Points).
    #[default]
    Sum,
    /// One action must match the target by itself (Hit Tier, Total Points Balance).
    Match,
}

/// How a `match` trigger compares an action's value with its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Comparator {
    #[default]
    Eq,
    Gte,
    Gt,
    Lte,
    Lt,
}

impl Comparator {
    pub fn holds(self, value: Decimal, target: Decimal) -> bool {
        match self {
            Comparator::Eq => value == target,
            Comparator::Gte => value >= target,
            Comparator::Gt => value > target,
            Comparator::Lte => value <= target,
            Comparator::Lt => value < target,
        }
    }
}

/// A trigger: a kind of user action that challenges count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerDef {
    /// The seed's numeric id (1 = Earned Points …).
    pub id: u32,
    /// A machine name producers may send instead of the id (`post_comment`).
    #[serde(default)]
    pub key: Option<String>,
    /// KickApps: with a location the trigger is the compound key action + location.
    #[serde(default)]
    pub location: Option<String>,
    pub name: LocalizedText,
    /// The seed's trigger type, shown as `triggerType` (e.g. 2 = Points).
    #[serde(rename = "type", default)]
    pub trigger_type: u32,
    #[serde(default)]
    pub aggregation: Aggregation,
    #[serde(default)]
    pub comparator: Comparator,
}

/// `AND` / `OR` between the triggers of a group and between groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Operator {
    #[default]
    #[serde(alias = "and")]
    And,
    #[serde(alias = "or")]
    Or,
}

impl Operator {
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::And => "AND",
            Operator::Or => "OR",
        }
    }
}

/// One trigger inside a challenge's group, with its target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerRequirement {
    pub trigger: u32,
    #[serde(default)]
    pub order: u32,
    /// Joins this trigger to the one before it in order (ignored on the first).
    #[serde(default)]
    pub operator: Operator,
    /// Sum triggers: the amount to accumulate. Match triggers: the target value.
    #[serde(with = "crate::core::decimal::lenient")]
    pub frequency: Decimal,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerGroup {
    pub id: u32,
    #[serde(default)]
    pub order: u32,
    /// Joins this group to the one before it in order (ignored on the first).
    #[serde(default)]
    pub operator: Operator,
    pub triggers: Vec<TriggerRequirement>,
}

/// A prize issued with a milestone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prize {
    pub reward_type: String,
    #[serde(default = "one", with = "crate::core::decimal::lenient")]
    pub amount: Decimal,
    #[serde(default)]
    pub description: LocalizedText,
    /// Days from the milestone's event time until the prize expires.
    #[serde(default)]
    pub expires_after_days: Option<u32>,
    /// A fixed expiry, when the prize has one.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

/// What happens to the part of a sum that goes past the target when a milestone is awarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overshoot {
    /// The seed: the contributing actions are marked used, all of them; the excess is gone.
    #[default]
    Discard,
    /// The excess carries into the next cycle of a repeatable challenge.
    Carry,
}

/// The period a per-user cap counts wins in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CapPeriod {
    #[default]
    Total,
    Day,
    Week,
    Month,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Challenge {
    pub id: u32,
    pub name: LocalizedText,
    #[serde(default)]
    pub description: LocalizedText,
    #[serde(default)]
    pub category: Option<u32>,
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub start: Option<DateTime<Utc>>,
    #[serde(default)]
    pub end: Option<DateTime<Utc>>,
    #[serde(default = "yes")]
    pub visible: bool,
    /// Locked until the user has achieved this challenge.
    #[serde(default)]
    pub parent: Option<u32>,
    #[serde(default)]
    pub repeatable: bool,
    /// Wins per user per `cap_period`; past it a completion issues nothing and says `capped`.
    #[serde(default)]
    pub max_per_user: Option<u32>,
    #[serde(default)]
    pub cap_period: CapPeriod,
    /// Winners across all users ("limited"); owned by the inventory stage.
    #[serde(default)]
    pub max_winners: Option<u64>,
    #[serde(default)]
    pub overshoot: Overshoot,
    /// Prizes are credited at once and no unclaimed milestone is kept: for per-event rewards
    /// that would otherwise pile up in the progress page. Only unlimited reward types.
    #[serde(default)]
    pub auto_claim: bool,
    /// The most milestones of this challenge a user may hold unclaimed; completions past it
    /// are rejected (`unclaimed_limit`) until the user claims. Default 100.
    #[serde(default)]
    pub max_unclaimed: Option<u32>,
    pub groups: Vec<TriggerGroup>,
    #[serde(default)]
    pub prizes: Vec<Prize>,
}

impl Challenge {
    /// A challenge with a global winners cap: the seed calls these "limited".
    pub fn is_limited(&self) -> bool {
        self.max_winners.is_some()
    }

    /// The bound on unclaimed milestones of this challenge per user.
    pub fn max_unclaimed(&self) -> u32 {
        self.max_unclaimed
            .unwrap_or(crate::core::limits::DEFAULT_MAX_UNCLAIMED)
    }

    /// Whether `at` falls inside the challenge's window (both ends optional, end exclusive).
    pub fn is_open_at(&self, at: DateTime<Utc>) -> bool {
        self.start.is_none_or(|s| at >= s) && self.end.is_none_or(|e| at < e)
    }
}

fn yes() -> bool {
    true
}

fn one() -> Decimal {
    Decimal::ONE
}
