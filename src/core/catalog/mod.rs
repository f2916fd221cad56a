//! The catalog: reward types, inventories, categories, triggers, challenges, earning rules
//! (events), operations and offers, per tenant.
//!
//! Parsing is pure: [`Catalog::from_sources`] takes `(file name, text)` pairs, so `check`,
//! the worker, `replay` and tests share one validator, and reading the directory is the
//! caller's IO. Every problem is reported with its file and line, all of them at once.

mod history;
mod model;
mod offers;
mod operations;
mod parse;
mod rules;
mod rules_check;

pub use history::{CatalogHistory, CatalogVersion, Refusal, SourceFile, VersionInfo};
pub use model::*;
pub use offers::{is_plain_id, Offer, MAX_OFFER_ID_LEN};
pub use operations::{Operation, MAX_OPERATION_NAME_BYTES};
pub use parse::{CatalogError, CatalogErrors};
pub use rules::*;
pub use rules_check::{
    Condition, EventRules, Rule, Streak, StreakKind, Test, CALL_FIELDS, MAX_TIMEOUT,
};

use super::model::{TriggerKey, DEFAULT_TENANT};
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;
use std::sync::Arc;

/// All tenants' catalogs, validated and indexed for the evaluator.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Shared, so the catalogs in force at different times share the tenants they agree on.
    tenants: BTreeMap<String, Arc<TenantCatalog>>,
}

/// One tenant's catalog. Groups and triggers are kept sorted by their `order`, so the
/// evaluator and the progress query walk them as they are.
#[derive(Debug, Clone, Default)]
pub struct TenantCatalog {
    pub tenant: String,
    /// Which version of the tenant's catalog this is: 0 for the files a process started with,
    /// then 1, 2, … as changes are published to the catalog log ([`CatalogHistory`]).
    pub version: u64,
    pub reward_types: Vec<RewardType>,
    pub inventories: Vec<Inventory>,
    pub categories: Vec<Category>,
    pub triggers: Vec<TriggerDef>,
    pub challenges: Vec<Challenge>,
    /// How late an action's event time may be and still count toward a challenge that closed
    /// since (see `core::limits::default_allowed_lateness`).
    pub allowed_lateness: chrono::Duration,
    /// Earning rules, as written (sorted by name); [`TenantCatalog::event`] has them compiled.
    pub events: Vec<EventDef>,
    /// The tenant's days (streaks) are days of this zone; UTC unless a file sets `time_zone`.
    pub time_zone: chrono_tz::Tz,
    /// Rokwire's operations: what each service may grant (`POST /int/reward`).
    pub operations: Vec<Operation>,
    /// What users may spend coins on (the Kwegg API's offers), in catalog order.
    pub offers: Vec<Offer>,
    event_rules: rules_check::EventIndex,
    trigger_by_id: FxHashMap<u32, usize>,
    /// Triggers by `key`: names, and numeric keys under their number in `triggers_by_number`.
    triggers_by_key: FxHashMap<String, Vec<usize>>,
    triggers_by_number: FxHashMap<u32, Vec<usize>>,
    challenges_by_trigger: FxHashMap<u32, Vec<usize>>,
    /// Per challenge, as in `challenges`: whether it needs every one of its requirements met
    /// (every operator after the first is AND, in its groups and between them).
    needs_all: Vec<bool>,
    challenge_by_id: FxHashMap<u32, usize>,
    reward_type_by_name: FxHashMap<String, usize>,
}

/// Whether every operator after the first is AND: the evaluator's `join_in_order` ignores
/// the first, so the join then needs every value true.
fn and_after_first(mut operators: impl Iterator<Item = Operator>) -> bool {
    operators.next();
    operators.all(|op| op == Operator::And)
}

/// Why an action's trigger does not resolve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("unknown tenant '{0}'")]
    UnknownTenant(String),
    #[error("unknown trigger '{0}'")]
    UnknownTrigger(String),
}

impl Catalog {
    /// Parses and validates catalog files given as `(file name, TOML text)`.
    pub fn from_sources<N: AsRef<str>, T: AsRef<str>>(
        sources: &[(N, T)],
    ) -> Result<Catalog, CatalogErrors> {
        parse::parse_sources(sources)
    }

    pub fn tenant(&self, tenant: &str) -> Option<&TenantCatalog> {
        self.tenants.get(tenant).map(|t| &**t)
    }

    /// The tenant's catalog, shared: what outlives a borrow of this catalog.
    pub fn tenant_shared(&self, tenant: &str) -> Option<Arc<TenantCatalog>> {
        self.tenants.get(tenant).cloned()
    }

    pub fn tenants(&self) -> impl Iterator<Item = &TenantCatalog> {
        self.tenants.values().map(|t| &**t)
    }

    /// Resolves an action's trigger key (id, or name with an optional location) to a trigger.
    pub fn resolve_trigger(
        &self,
        tenant: &str,
        key: &TriggerKey,
        location: Option<&str>,
    ) -> Result<&TriggerDef, ResolveError> {
        let catalog = self
            .tenant(tenant)
            .ok_or_else(|| ResolveError::UnknownTenant(tenant.to_string()))?;
        catalog
            .resolve_trigger(key, location)
            .ok_or_else(|| ResolveError::UnknownTrigger(describe_key(key, location)))
    }

    pub(crate) fn insert(&mut self, catalog: TenantCatalog) {
        self.tenants
            .insert(catalog.tenant.clone(), Arc::new(catalog));
    }
}

fn describe_key(key: &TriggerKey, location: Option<&str>) -> String {
    match location {
        Some(loc) => format!("{key}@{loc}"),
        None => key.to_string(),
    }
}

impl TenantCatalog {
    pub(crate) fn new(tenant: String) -> Self {
        TenantCatalog {
            tenant,
            allowed_lateness: super::limits::default_allowed_lateness(),
            ..Default::default()
        }
    }

    /// Builds the lookup indexes; called once after validation.
    pub(crate) fn build_indexes(&mut self) {
        for challenge in &mut self.challenges {
            challenge.groups.sort_by_key(|g| (g.order, g.id));
            for group in &mut challenge.groups {
                group.triggers.sort_by_key(|t| (t.order, t.trigger));
            }
            challenge
                .prizes
                .sort_by(|a, b| a.reward_type.cmp(&b.reward_type));
        }
        self.challenges.sort_by_key(|c| c.id);
        self.triggers.sort_by_key(|t| t.id);
        self.categories.sort_by_key(|c| c.id);
        self.trigger_by_id = self
            .triggers
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id, i))
            .collect();
        self.triggers_by_key.clear();
        self.triggers_by_number.clear();
        for (i, t) in self.triggers.iter().enumerate() {
            if let Some(key) = &t.key {
                match key.parse::<u32>() {
                    Ok(number) => self.triggers_by_number.entry(number).or_default().push(i),
                    Err(_) => self.triggers_by_key.entry(key.clone()).or_default().push(i),
                }
            }
        }
        self.challenge_by_id = self
            .challenges
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id, i))
            .collect();
        self.needs_all = self
            .challenges
            .iter()
            .map(|c| {
                and_after_first(c.groups.iter().map(|g| g.operator))
                    && c.groups
                        .iter()
                        .all(|g| and_after_first(g.triggers.iter().map(|t| t.operator)))
            })
            .collect();
        self.challenges_by_trigger.clear();
        for (i, c) in self.challenges.iter().enumerate() {
            for g in &c.groups {
                for t in &g.triggers {
                    let list = self.challenges_by_trigger.entry(t.trigger).or_default();
                    if list.last() != Some(&i) {
                        list.push(i);
                    }
                }
            }
        }
        self.reward_type_by_name = self
            .reward_types
            .iter()
            .enumerate()
            .map(|(i, r)| (r.reward_type.clone(), i))
            .collect();
    }

    pub fn trigger(&self, id: u32) -> Option<&TriggerDef> {
        self.trigger_by_id.get(&id).map(|&i| &self.triggers[i])
    }

    pub fn challenge(&self, id: u32) -> Option<&Challenge> {
        self.challenge_by_id.get(&id).map(|&i| &self.challenges[i])
    }

    pub fn category(&self, id: u32) -> Option<&Category> {
        self.categories.iter().find(|c| c.id == id)
    }

    pub fn reward_type(&self, name: &str) -> Option<&RewardType> {
        self.reward_type_by_name
            .get(name)
            .map(|&i| &self.reward_types[i])
    }

    /// The operation of this code, if the tenant has one.
    pub fn operation(&self, code: &str) -> Option<&Operation> {
        self.operations.iter().find(|o| o.code == code)
    }

    /// The offer with this id, if the tenant has one.
    pub fn offer(&self, id: &str) -> Option<&Offer> {
        self.offers.iter().find(|o| o.id == id)
    }

    /// Inventories of a reward type, in catalog order: grants draw from the first with stock.
    pub fn inventories_of<'a>(
        &'a self,
        reward_type: &'a str,
    ) -> impl Iterator<Item = &'a Inventory> {
        self.inventories
            .iter()
            .filter(move |i| i.reward_type == reward_type)
    }

    /// Whether grants of this reward type go through the inventory stage.
    pub fn is_limited(&self, reward_type: &str) -> bool {
        self.inventories_of(reward_type).next().is_some()
    }

    /// The challenges that count a trigger, in id order, each with whether it needs every one
    /// of its requirements met (AND throughout): for such a challenge one unmet requirement
    /// says it is not complete, without reading the others. Both come from
    /// `build_indexes`, which fills the two lists together.
    pub fn challenges_for_trigger(
        &self,
        trigger: u32,
    ) -> impl ExactSizeIterator<Item = (&Challenge, bool)> {
        self.challenges_by_trigger
            .get(&trigger)
            .map(|v| v.as_slice())
            .unwrap_or(&[])
            .iter()
            .map(|&i| (&self.challenges[i], self.needs_all[i]))
    }

    /// Resolves an action's trigger key and location; numbers and names alike honour the
    /// location (KickApps: action + location is the compound key).
    ///
    /// A name is a trigger `key`. A number is a numeric `key` when some trigger has it (the
    /// catalog makes sure the trigger with that id then has it too), else a trigger id. Among
    /// the candidates, the trigger with exactly the action's location wins, else one without
    /// a location; a trigger with another location never matches, nor does a trigger with a
    /// location when the action has none.
    pub fn resolve_trigger(&self, key: &TriggerKey, location: Option<&str>) -> Option<&TriggerDef> {
        match key {
            TriggerKey::Id(number) => self.resolve_number(*number, location),
            TriggerKey::Name(name) => match name.parse::<u32>() {
                // A number written as text (a command produced by hand): what the mapping
                // would have read.
                Ok(number) => self.resolve_number(number, location),
                Err(_) => self.pick(self.triggers_by_key.get(name)?, location),
            },
        }
    }

    fn resolve_number(&self, number: u32, location: Option<&str>) -> Option<&TriggerDef> {
        match self.triggers_by_number.get(&number) {
            Some(keyed) => self.pick(keyed, location),
            None => self.trigger(number).filter(|t| {
                t.location
                    .as_deref()
                    .is_none_or(|want| Some(want) == location)
            }),
        }
    }

    /// The candidate with exactly `location`, else the first without a location.
    fn pick(&self, candidates: &[usize], location: Option<&str>) -> Option<&TriggerDef> {
        let mut fallback = None;
        for &i in candidates {
            let t = &self.triggers[i];
            match (&t.location, location) {
                (Some(want), Some(have)) if want == have => return Some(t),
                (None, _) => fallback = fallback.or(Some(t)),
                _ => {}
            }
        }
        fallback
    }
}

impl Catalog {
    /// The default tenant's catalog, the one most callers and the demo use.
    pub fn default_tenant(&self) -> Option<&TenantCatalog> {
        self.tenant(DEFAULT_TENANT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// What lets the evaluator stop at one unmet requirement: when every operator after
        /// the first is AND (whatever the first), the join in order is true exactly when
        /// every value is.
        #[test]
        fn a_join_of_ands_needs_every_value(
            first_is_and in any::<bool>(),
            values in prop::collection::vec(any::<bool>(), 0..8),
        ) {
            let first = if first_is_and { Operator::And } else { Operator::Or };
            let items: Vec<(Operator, bool)> = values
                .iter()
                .enumerate()
                .map(|(i, &value)| (if i == 0 { first } else { Operator::And }, value))
                .collect();
            prop_assert!(and_after_first(items.iter().map(|&(op, _)| op)));
            let every = !values.is_empty() && values.iter().all(|&value| value);
            prop_assert_eq!(crate::core::evaluator::join_in_order(items), every);
        }
    }

    /// A challenge needs every requirement only when no OR joins its groups or the
    /// requirements within one; the first operator of each list is ignored, as the
    /// evaluator ignores it.
    #[test]
    fn needs_all_is_and_throughout() {
        let text = "[[reward_types]]\nreward_type = \"points\"\n\
            [[triggers]]\nid = 1\nname = \"a\"\n[[triggers]]\nid = 2\nname = \"b\"\n\
            [[challenges]]\nid = 1\nname = \"ands\"\n\
            [[challenges.groups]]\nid = 1\noperator = \"OR\"\n\
            triggers = [{ trigger = 1, frequency = 1, operator = \"OR\" }, { trigger = 2, frequency = 1 }]\n\
            [[challenges.groups]]\nid = 2\ntriggers = [{ trigger = 2, frequency = 5 }]\n\
            [[challenges]]\nid = 2\nname = \"or within\"\n\
            [[challenges.groups]]\nid = 1\n\
            triggers = [{ trigger = 1, frequency = 1 }, { trigger = 2, frequency = 1, operator = \"OR\" }]\n\
            [[challenges]]\nid = 3\nname = \"or between\"\n\
            [[challenges.groups]]\nid = 1\ntriggers = [{ trigger = 1, frequency = 1 }]\n\
            [[challenges.groups]]\nid = 2\noperator = \"OR\"\ntriggers = [{ trigger = 2, frequency = 1 }]\n";
        let catalog = Catalog::from_sources(&[("c.toml", text.to_string())]).unwrap();
        let tenant = catalog.default_tenant().unwrap();
        let needs_all: Vec<(u32, bool)> = tenant
            .challenges_for_trigger(2)
            .map(|(c, needs_all)| (c.id, needs_all))
            .collect();
        assert_eq!(needs_all, vec![(1, true), (2, false), (3, false)]);
    }

    fn catalog(triggers: &str) -> Catalog {
        let text = format!(
            "[[reward_types]]\nreward_type = \"points\"\ndisplay_name = \"Points\"\n{triggers}\n\
             [[challenges]]\nid = 1\nname = \"c\"\n[[challenges.groups]]\nid = 1\n\
             triggers = [{{ trigger = 1, frequency = 1 }}]\n"
        );
        Catalog::from_sources(&[("c.toml", text)]).unwrap()
    }

    fn trigger(id: u32, extra: &str) -> String {
        format!("[[triggers]]\nid = {id}\nname = \"t{id}\"\n{extra}\n")
    }

    fn resolved(c: &Catalog, key: TriggerKey, location: Option<&str>) -> Option<u32> {
        c.resolve_trigger(DEFAULT_TENANT, &key, location)
            .ok()
            .map(|t| t.id)
    }

    /// Numbers honour the location as names do: an exact location first, else a trigger
    /// without one; a location-specific trigger never matches elsewhere.
    #[test]
    fn numeric_keys_and_ids_honour_the_location() {
        let c = catalog(
            &[
                trigger(1, ""),
                trigger(20, "key = \"post_comment\"\nlocation = \"forum\""),
                trigger(120, "key = \"7\"\nlocation = \"forum\""),
                trigger(121, "key = \"7\"\nlocation = \"blog\""),
                trigger(122, "key = \"7\""),
                trigger(130, "key = \"8\"\nlocation = \"forum\""),
            ]
            .concat(),
        );
        let id = TriggerKey::Id;
        // Plain ids, no location on the trigger: any location.
        assert_eq!(resolved(&c, id(1), None), Some(1));
        assert_eq!(resolved(&c, id(1), Some("blog")), Some(1));
        // Trigger 20 is the forum's only.
        assert_eq!(resolved(&c, id(20), Some("forum")), Some(20));
        assert_eq!(resolved(&c, id(20), Some("blog")), None);
        assert_eq!(resolved(&c, id(20), None), None);
        // Numeric keys: the exact location, else the one without a location.
        assert_eq!(resolved(&c, id(7), Some("forum")), Some(120));
        assert_eq!(resolved(&c, id(7), Some("blog")), Some(121));
        assert_eq!(resolved(&c, id(7), Some("wiki")), Some(122));
        assert_eq!(resolved(&c, id(7), None), Some(122));
        assert_eq!(resolved(&c, id(8), Some("forum")), Some(130));
        assert_eq!(resolved(&c, id(8), Some("blog")), None);
        // A number sent as a name (a command written by hand) resolves the same.
        assert_eq!(
            resolved(&c, TriggerKey::Name("7".into()), Some("blog")),
            Some(121)
        );
        assert_eq!(
            c.resolve_trigger(DEFAULT_TENANT, &id(8), Some("blog"))
                .unwrap_err()
                .to_string(),
            "unknown trigger '8@blog'"
        );
    }
}
