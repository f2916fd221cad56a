//! Catalog files → a validated [`Catalog`], with every error's file and line.

use super::*;
use crate::core::limits;
use rust_decimal::Decimal;
use serde::Deserialize;
use std::collections::{BTreeSet, HashSet};
use toml::Spanned;

/// One problem in one catalog file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogError {
    pub file: String,
    /// 1-based; 0 when the problem concerns the catalog as a whole.
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for CatalogError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        } else {
            write!(f, "{}: {}", self.file, self.message)
        }
    }
}

/// Every problem found, so one `questline check` run shows them all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct CatalogErrors(pub Vec<CatalogError>);

impl std::fmt::Display for CatalogErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// The shape of one catalog file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    #[serde(default)]
    tenant: Option<String>,
    /// How late an action's event time may be and still count toward a challenge that closed
    /// since (`"24h"`, `"90m"`, `"7d"`). One value per tenant.
    #[serde(default)]
    allowed_lateness: Option<Spanned<String>>,
    #[serde(default)]
    reward_types: Vec<Spanned<RewardType>>,
    #[serde(default)]
    inventories: Vec<Spanned<Inventory>>,
    #[serde(default)]
    categories: Vec<Spanned<Category>>,
    #[serde(default)]
    triggers: Vec<Spanned<TriggerDef>>,
    #[serde(default)]
    challenges: Vec<Spanned<Challenge>>,
    /// The tenant's time zone (IANA name); files of one tenant must agree on it.
    #[serde(default)]
    time_zone: Option<Spanned<String>>,
    #[serde(default)]
    events: Vec<Spanned<EventDef>>,
    #[serde(default)]
    operations: Vec<Spanned<Operation>>,
    #[serde(default)]
    offers: Vec<Spanned<Offer>>,
}

/// Where an item was defined, for errors found after parsing.
#[derive(Clone)]
struct Origin {
    file: String,
    line: usize,
}

#[derive(Default)]
struct Collected {
    allowed_lateness: Option<(chrono::Duration, String, Origin)>,
    reward_types: Vec<(RewardType, Origin)>,
    inventories: Vec<(Inventory, Origin)>,
    categories: Vec<(Category, Origin)>,
    triggers: Vec<(TriggerDef, Origin)>,
    challenges: Vec<(Challenge, Origin)>,
    time_zone: Vec<(String, Origin)>,
    events: Vec<(EventDef, Origin)>,
    operations: Vec<(Operation, Origin)>,
    offers: Vec<(Offer, Origin)>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

pub(super) fn parse_sources<N: AsRef<str>, T: AsRef<str>>(
    sources: &[(N, T)],
) -> Result<Catalog, CatalogErrors> {
    let mut errors = Vec::new();
    let mut by_tenant: BTreeMap<String, Collected> = BTreeMap::new();
    for (name, text) in sources {
        let (name, text) = (name.as_ref(), text.as_ref());
        let file: CatalogFile = match toml::from_str(text) {
            Ok(f) => f,
            Err(e) => {
                let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(0);
                errors.push(CatalogError {
                    file: name.to_string(),
                    line,
                    message: e.message().to_string(),
                });
                continue;
            }
        };
        let tenant = file.tenant.unwrap_or_else(|| DEFAULT_TENANT.to_string());
        if tenant.trim().is_empty() || tenant.len() > limits::MAX_TENANT_BYTES {
            // Actions name their tenant in at most this many bytes: a longer one is unreachable.
            errors.push(CatalogError {
                file: name.to_string(),
                line: 0,
                message: format!(
                    "tenant must not be blank and at most {} bytes",
                    limits::MAX_TENANT_BYTES
                ),
            });
        }
        let collected = by_tenant.entry(tenant).or_default();
        let origin = |span: std::ops::Range<usize>| Origin {
            file: name.to_string(),
            line: line_of(text, span.start),
        };
        macro_rules! take {
            ($field:ident) => {
                for item in file.$field {
                    let o = origin(item.span());
                    collected.$field.push((item.into_inner(), o));
                }
            };
        }
        if let Some(text) = file.allowed_lateness {
            let o = origin(text.span());
            let text = text.into_inner();
            match humantime::parse_duration(text.trim())
                .ok()
                .and_then(|d| chrono::Duration::from_std(d).ok())
            {
                None => errors.push(CatalogError {
                    file: o.file.clone(),
                    line: o.line,
                    message: format!(
                        "allowed_lateness '{text}' is not a duration (e.g. \"24h\", \"90m\", \"7d\")"
                    ),
                }),
                Some(d) => match &collected.allowed_lateness {
                    Some((earlier, _, first)) if *earlier != d => errors.push(CatalogError {
                        file: o.file.clone(),
                        line: o.line,
                        message: format!(
                            "allowed_lateness '{text}' differs from the tenant's value in {}:{}",
                            first.file, first.line
                        ),
                    }),
                    _ => collected.allowed_lateness = Some((d, text, o)),
                },
            }
        }
        take!(reward_types);
        take!(inventories);
        take!(categories);
        take!(triggers);
        take!(challenges);
        take!(events);
        take!(operations);
        take!(offers);
        if let Some(tz) = file.time_zone {
            let o = origin(tz.span());
            collected.time_zone.push((tz.into_inner(), o));
        }
    }
    let mut catalog = Catalog::default();
    for (tenant, collected) in by_tenant {
        let mut v = Validator {
            errors: &mut errors,
        };
        let tenant_catalog = v.validate(tenant, collected);
        catalog.insert(tenant_catalog);
    }
    if errors.is_empty() {
        Ok(catalog)
    } else {
        errors.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
        Err(CatalogErrors(errors))
    }
}

struct Validator<'a> {
    errors: &'a mut Vec<CatalogError>,
}

impl Validator<'_> {
    fn err(&mut self, origin: &Origin, message: impl Into<String>) {
        self.errors.push(CatalogError {
            file: origin.file.clone(),
            line: origin.line,
            message: message.into(),
        });
    }

    fn unique<K: std::hash::Hash + Eq + std::fmt::Display>(
        &mut self,
        what: &str,
        items: impl Iterator<Item = (K, Origin)>,
    ) -> HashSet<K> {
        let mut seen = HashSet::new();
        for (key, origin) in items {
            if seen.contains(&key) {
                self.err(&origin, format!("duplicate {what} '{key}'"));
            } else {
                seen.insert(key);
            }
        }
        seen
    }

    fn validate(&mut self, tenant: String, c: Collected) -> TenantCatalog {
        let reward_types = self.unique(
            "reward type",
            c.reward_types
                .iter()
                .map(|(r, o)| (r.reward_type.clone(), o.clone())),
        );
        let categories = self.unique(
            "category id",
            c.categories.iter().map(|(x, o)| (x.id, o.clone())),
        );
        let triggers = self.unique(
            "trigger id",
            c.triggers.iter().map(|(x, o)| (x.id, o.clone())),
        );
        let challenges = self.unique(
            "challenge id",
            c.challenges.iter().map(|(x, o)| (x.id, o.clone())),
        );
        self.unique(
            "inventory id",
            c.inventories.iter().map(|(x, o)| (x.id.clone(), o.clone())),
        );

        for (r, o) in &c.reward_types {
            if r.reward_type.trim().is_empty() {
                self.err(o, "reward_type must not be empty");
            }
        }
        let mut inventoried = BTreeSet::new();
        for (inv, o) in &c.inventories {
            if !reward_types.contains(&inv.reward_type) {
                self.err(
                    o,
                    format!(
                        "inventory '{}': unknown reward_type '{}'",
                        inv.id, inv.reward_type
                    ),
                );
            }
            if !inv.codes.is_empty() && (inv.codes.len() as u64) < inv.amount_total {
                self.err(
                    o,
                    format!(
                        "inventory '{}': amount_total {} but only {} codes",
                        inv.id,
                        inv.amount_total,
                        inv.codes.len()
                    ),
                );
            }
            inventoried.insert(inv.reward_type.clone());
        }
        for (r, o) in &c.reward_types {
            if r.kind == RewardKind::Voucher
                && !c
                    .inventories
                    .iter()
                    .any(|(i, _)| i.reward_type == r.reward_type && !i.codes.is_empty())
            {
                self.err(
                    o,
                    format!(
                        "voucher reward type '{}' needs an inventory with codes",
                        r.reward_type
                    ),
                );
            }
        }
        let key_of: FxHashMap<u32, Option<&str>> = c
            .triggers
            .iter()
            .map(|(t, _)| (t.id, t.key.as_deref()))
            .collect();
        for (t, o) in &c.triggers {
            if let Some(key) = &t.key {
                if let Some(problem) = key_problem(t.id, key, &key_of) {
                    self.err(o, format!("trigger {}: {problem}", t.id));
                }
            }
            if t.location
                .as_ref()
                .is_some_and(|l| l.len() > limits::MAX_LOCATION_BYTES)
            {
                self.err(
                    o,
                    format!(
                        "trigger {}: location must be at most {} bytes",
                        t.id,
                        limits::MAX_LOCATION_BYTES
                    ),
                );
            }
            if t.location.is_some() && t.key.is_none() {
                self.err(
                    o,
                    format!(
                        "trigger {}: a location needs a key (action + location)",
                        t.id
                    ),
                );
            }
        }
        let trigger_aggregation: FxHashMap<u32, Aggregation> = c
            .triggers
            .iter()
            .map(|(t, _)| (t.id, t.aggregation))
            .collect();
        for (ch, o) in &c.challenges {
            self.validate_challenge(
                ch,
                o,
                &triggers,
                &categories,
                &challenges,
                &reward_types,
                &inventoried,
                &trigger_aggregation,
            );
        }
        self.check_parent_cycles(&c.challenges);

        let time_zone = self.time_zone(&c.time_zone);
        let payable = rules_check::Payable::new(
            c.reward_types.iter().map(|(r, _)| r),
            c.inventories.iter().map(|(i, _)| i),
        );
        self.unique(
            "event",
            c.events.iter().map(|(e, o)| (e.name.clone(), o.clone())),
        );
        let mut event_rules = Vec::with_capacity(c.events.len());
        for (e, o) in &c.events {
            match rules_check::compile_event(e, &payable) {
                Ok(rules) => event_rules.push(rules),
                Err(problems) => problems.into_iter().for_each(|p| self.err(o, p)),
            }
        }

        self.unique(
            "operation code",
            c.operations
                .iter()
                .map(|(op, o)| (op.code.clone(), o.clone())),
        );
        for (op, o) in &c.operations {
            for problem in op.problems(&reward_types) {
                self.err(o, problem);
            }
        }

        self.unique(
            "offer id",
            c.offers.iter().map(|(x, o)| (x.id.clone(), o.clone())),
        );
        for (offer, o) in &c.offers {
            for problem in offer.problems() {
                self.err(o, problem);
            }
        }

        let mut catalog = TenantCatalog::new(tenant);
        if let Some((lateness, _, _)) = c.allowed_lateness {
            catalog.allowed_lateness = lateness;
        }
        catalog.reward_types = c.reward_types.into_iter().map(|(x, _)| x).collect();
        catalog.inventories = c.inventories.into_iter().map(|(x, _)| x).collect();
        catalog.categories = c.categories.into_iter().map(|(x, _)| x).collect();
        catalog.triggers = c.triggers.into_iter().map(|(x, _)| x).collect();
        catalog.challenges = c.challenges.into_iter().map(|(x, _)| x).collect();
        catalog.events = c.events.into_iter().map(|(x, _)| x).collect();
        catalog.operations = c.operations.into_iter().map(|(x, _)| x).collect();
        catalog.offers = c.offers.into_iter().map(|(x, _)| x).collect();
        catalog.time_zone = time_zone;
        catalog.set_event_rules(event_rules);
        catalog.build_indexes();
        catalog
    }

    #[allow(clippy::too_many_arguments)]
    fn validate_challenge(
        &mut self,
        ch: &Challenge,
        o: &Origin,
        triggers: &HashSet<u32>,
        categories: &HashSet<u32>,
        challenges: &HashSet<u32>,
        reward_types: &HashSet<String>,
        inventoried: &BTreeSet<String>,
        aggregation: &FxHashMap<u32, Aggregation>,
    ) {
        let id = ch.id;
        if ch.groups.is_empty() {
            self.err(o, format!("challenge {id}: needs at least one group"));
        }
        if let (Some(s), Some(e)) = (ch.start, ch.end) {
            if s >= e {
                self.err(o, format!("challenge {id}: start must be before end"));
            }
        }
        if let Some(cat) = ch.category {
            if !categories.contains(&cat) {
                self.err(o, format!("challenge {id}: unknown category {cat}"));
            }
        }
        if let Some(parent) = ch.parent {
            if parent == id {
                self.err(o, format!("challenge {id}: cannot be its own parent"));
            } else if !challenges.contains(&parent) {
                self.err(
                    o,
                    format!("challenge {id}: unknown parent challenge {parent}"),
                );
            }
        }
        if ch.max_per_user == Some(0) {
            self.err(
                o,
                format!("challenge {id}: max_per_user must be at least 1"),
            );
        }
        if ch.max_unclaimed == Some(0) {
            self.err(
                o,
                format!("challenge {id}: max_unclaimed must be at least 1"),
            );
        }
        if ch.max_winners == Some(0) {
            self.err(o, format!("challenge {id}: max_winners must be at least 1"));
        }
        if ch.overshoot == Overshoot::Carry && !ch.repeatable {
            self.err(
                o,
                format!("challenge {id}: overshoot = \"carry\" needs repeatable = true"),
            );
        }
        let mut group_ids = HashSet::new();
        for g in &ch.groups {
            if !group_ids.insert(g.id) {
                self.err(o, format!("challenge {id}: duplicate group id {}", g.id));
            }
            if g.triggers.is_empty() {
                self.err(o, format!("challenge {id}: group {} has no triggers", g.id));
            }
            let mut seen = HashSet::new();
            for t in &g.triggers {
                if !seen.insert(t.trigger) {
                    self.err(
                        o,
                        format!(
                            "challenge {id}: group {} lists trigger {} twice",
                            g.id, t.trigger
                        ),
                    );
                }
                if !triggers.contains(&t.trigger) {
                    self.err(
                        o,
                        format!(
                            "challenge {id}: group {}: unknown trigger {}",
                            g.id, t.trigger
                        ),
                    );
                } else if t.frequency.abs() > limits::MAX_AMOUNT {
                    self.err(
                        o,
                        format!(
                            "challenge {id}: trigger {}: frequency must be at most {}",
                            t.trigger,
                            limits::MAX_AMOUNT
                        ),
                    );
                } else if aggregation.get(&t.trigger) == Some(&Aggregation::Sum)
                    && t.frequency <= Decimal::ZERO
                {
                    self.err(
                        o,
                        format!(
                            "challenge {id}: trigger {}: frequency must be greater than 0",
                            t.trigger
                        ),
                    );
                }
            }
        }
        for p in &ch.prizes {
            if !reward_types.contains(&p.reward_type) {
                self.err(
                    o,
                    format!(
                        "challenge {id}: prize of unknown reward_type '{}'",
                        p.reward_type
                    ),
                );
            }
            if !limits::is_valid_amount(p.amount) {
                self.err(
                    o,
                    format!(
                        "challenge {id}: prize amount must be greater than 0 and at most {} with at most {} decimal places",
                        limits::MAX_AMOUNT,
                        limits::MAX_SCALE
                    ),
                );
            }
            if inventoried.contains(&p.reward_type) {
                if !p.amount.fract().is_zero() {
                    self.err(
                        o,
                        format!(
                            "challenge {id}: prize of '{}' is counted by an inventory: its amount must be a whole number",
                            p.reward_type
                        ),
                    );
                }
                if ch.auto_claim {
                    self.err(
                        o,
                        format!(
                            "challenge {id}: auto_claim needs prizes without an inventory ('{}' has one)",
                            p.reward_type
                        ),
                    );
                }
            }
        }
    }

    /// The tenant's time zone: UTC, or the one its files name (all the same one).
    fn time_zone(&mut self, declared: &[(String, Origin)]) -> chrono_tz::Tz {
        let mut chosen: Option<(chrono_tz::Tz, &Origin)> = None;
        for (name, o) in declared {
            match (rules_check::time_zone(name), chosen) {
                (Err(e), _) => self.err(o, e),
                (Ok(tz), None) => chosen = Some((tz, o)),
                (Ok(tz), Some((first, at))) if tz != first => self.err(
                    o,
                    format!(
                        "time_zone '{name}' differs from the tenant's value in {}:{}",
                        at.file, at.line
                    ),
                ),
                (Ok(_), Some(_)) => {}
            }
        }
        chosen.map(|(tz, _)| tz).unwrap_or_default()
    }

    fn check_parent_cycles(&mut self, challenges: &[(Challenge, Origin)]) {
        let parent: FxHashMap<u32, u32> = challenges
            .iter()
            .filter_map(|(c, _)| c.parent.map(|p| (c.id, p)))
            .collect();
        for (c, o) in challenges {
            let mut at = c.id;
            let mut steps = 0;
            while let Some(&p) = parent.get(&at) {
                if p == c.id && steps > 0 {
                    self.err(o, format!("challenge {}: parent chain forms a cycle", c.id));
                    break;
                }
                at = p;
                steps += 1;
                if steps > challenges.len() {
                    break;
                }
            }
        }
    }
}

/// What is wrong with a trigger's `key`, if anything. Producers' ids arrive trimmed, and
/// numbers arrive as numbers (`20`, or `"20"` read as 20): a key must be written so that an
/// action can name it. A numeric key must also not be the id of another trigger, unless that
/// trigger carries the same key: a `triggerId` of 20 would otherwise mean two things.
fn key_problem(id: u32, key: &str, key_of: &FxHashMap<u32, Option<&str>>) -> Option<String> {
    if key.trim().is_empty() {
        return Some("key must not be blank".into());
    }
    if key.trim() != key {
        return Some("key must not start or end with whitespace".into());
    }
    if key.len() > limits::MAX_TRIGGER_NAME_BYTES {
        // Actions sending a longer name are dead-lettered: the trigger would be unreachable.
        return Some(format!(
            "key must be at most {} bytes",
            limits::MAX_TRIGGER_NAME_BYTES
        ));
    }
    // As `TriggerKey::from_json` reads an action's trigger: text that parses as a u32 is an id.
    let Ok(number) = key.parse::<u32>() else {
        return None;
    };
    if number.to_string() != key {
        return Some(format!(
            "a numeric key must be written as producers send it ('{number}')"
        ));
    }
    match key_of.get(&number) {
        Some(other) if number != id && *other != Some(key) => Some(format!(
            "key '{key}' is the id of trigger {number}, which has another key; \
             give trigger {number} the same key or choose another number"
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[reward_types]]
reward_type = "points"
display_name = "Points"

[[categories]]
id = 1
name = { en = "Points", ar = "نقاط" }

[[triggers]]
id = 1
name = "Earned Points"
type = 2

[[challenges]]
id = 1
name = "Earn 1000 Points"
category = 1
[[challenges.groups]]
id = 1
triggers = [{ trigger = 1, frequency = 1000 }]
[[challenges.prizes]]
reward_type = "points"
amount = 100
"#;

    #[test]
    fn parses_a_good_catalog() {
        let c = Catalog::from_sources(&[("a.toml", GOOD)]).unwrap();
        let t = c.default_tenant().unwrap();
        assert_eq!(t.challenges.len(), 1);
        assert_eq!(t.challenges_for_trigger(1).count(), 1);
        assert_eq!(t.category(1).unwrap().name.pick(&["ar".into()]), "نقاط");
    }

    #[test]
    fn syntax_errors_have_file_and_line() {
        let text = "[[triggers]]\nid = 1\nname = \"x\"\nbogus = 3\n";
        let err = Catalog::from_sources(&[("t.toml", text)]).unwrap_err();
        assert_eq!(err.0.len(), 1);
        assert_eq!(err.0[0].file, "t.toml");
        assert!(err.0[0].line >= 1, "{err}");
        assert!(err.0[0].message.contains("bogus"), "{err}");
    }

    #[test]
    fn semantic_errors_point_at_the_item() {
        let text = GOOD.replace("trigger = 1, frequency", "trigger = 9, frequency");
        let err = Catalog::from_sources(&[("c.toml", text)]).unwrap_err();
        let e = &err.0[0];
        assert_eq!(e.line, 15, "{err}"); // the `[[challenges]]` header of the item
        assert!(e.message.contains("unknown trigger 9"), "{err}");
    }

    #[test]
    fn reports_every_error_at_once() {
        let text = GOOD
            .replace(
                "trigger = 1, frequency = 1000",
                "trigger = 1, frequency = 0",
            )
            .replace("category = 1\n", "category = 7\n");
        let err = Catalog::from_sources(&[("c.toml", text)]).unwrap_err();
        assert_eq!(err.0.len(), 2, "{err}");
    }

    #[test]
    fn rejects_parent_cycles() {
        let text = format!(
            "{GOOD}\n[[challenges]]\nid = 2\nname = \"b\"\nparent = 3\n[[challenges.groups]]\nid = 1\ntriggers = [{{ trigger = 1, frequency = 1 }}]\n\
             [[challenges]]\nid = 3\nname = \"c\"\nparent = 2\n[[challenges.groups]]\nid = 1\ntriggers = [{{ trigger = 1, frequency = 1 }}]\n"
        );
        let err = Catalog::from_sources(&[("c.toml", text)]).unwrap_err();
        assert!(err.to_string().contains("cycle"), "{err}");
    }

    /// Amounts beyond the documented bounds, fractional stock and auto-claimed stock are
    /// refused at load, with the item's line.
    #[test]
    fn refuses_amounts_past_the_ledger_bounds() {
        let cases = [
            (
                GOOD.replace("amount = 100", "amount = 10000000000000000"),
                "prize amount must be greater than 0 and at most",
            ),
            (
                GOOD.replace("frequency = 1000", "frequency = 10000000000000000"),
                "frequency must be at most",
            ),
            (
                GOOD.replace("amount = 100", "amount = 0.000000001"),
                "at most 8 decimal places",
            ),
            (
                format!(
                    "{GOOD}\n[[inventories]]\nid = \"i\"\nreward_type = \"points\"\namount_total = 5\n"
                )
                .replace("amount = 100", "amount = 1.5"),
                "must be a whole number",
            ),
            (
                format!(
                    "{GOOD}\n[[inventories]]\nid = \"i\"\nreward_type = \"points\"\namount_total = 5\n"
                )
                .replace("category = 1\n", "category = 1\nauto_claim = true\n"),
                "auto_claim needs prizes without an inventory",
            ),
            (
                GOOD.replace("category = 1\n", "category = 1\nmax_unclaimed = 0\n"),
                "max_unclaimed must be at least 1",
            ),
        ];
        for (text, expected) in cases {
            let err = Catalog::from_sources(&[("c.toml", text)]).unwrap_err();
            assert!(err.to_string().contains(expected), "{expected}: {err}");
        }
    }

    /// KickApps' actionIds are numbers: a numeric key makes them compound keys with a
    /// location, like names. It must be written as the number producers send, and must not
    /// take the id of another trigger (an action's triggerId would name two triggers).
    #[test]
    fn numeric_keys_are_accepted_in_canonical_form_and_without_clashes() {
        let trigger = |id: u32, extra: &str| {
            format!("\n[[triggers]]\nid = {id}\nname = \"t{id}\"\n{extra}\n")
        };
        let with = |triggers: &str| format!("{GOOD}{triggers}");
        let ok = with(&format!(
            "{}{}",
            trigger(120, "key = \"20\"\nlocation = \"forum\""),
            trigger(121, "key = \"20\"")
        ));
        Catalog::from_sources(&[("c.toml", ok)]).unwrap();
        // The trigger with that id may carry the key itself.
        let own = with(&format!(
            "{}{}",
            trigger(20, "key = \"20\"\nlocation = \"forum\""),
            trigger(21, "key = \"20\"")
        ));
        Catalog::from_sources(&[("c.toml", own)]).unwrap();
        let cases = [
            (
                trigger(120, "key = \"020\""),
                "trigger 120: a numeric key must be written as producers send it ('20')",
            ),
            (
                trigger(120, "key = \" 20\""),
                "trigger 120: key must not start or end with whitespace",
            ),
            (
                format!(
                    "{}{}",
                    trigger(2, "key = \"x\""),
                    trigger(120, "key = \"2\"")
                ),
                "trigger 120: key '2' is the id of trigger 2, which has another key",
            ),
            (
                trigger(120, "key = \"1\""),
                "trigger 120: key '1' is the id of trigger 1, which has another key",
            ),
            (
                trigger(120, "key = \"\""),
                "trigger 120: key must not be blank",
            ),
            (
                trigger(120, &format!("key = \"{}\"", "k".repeat(257))),
                "trigger 120: key must be at most 256 bytes",
            ),
            (
                trigger(
                    120,
                    &format!("key = \"k\"\nlocation = \"{}\"", "l".repeat(257)),
                ),
                "trigger 120: location must be at most 256 bytes",
            ),
        ];
        for (triggers, expected) in cases {
            let err = Catalog::from_sources(&[("c.toml", with(&triggers))]).unwrap_err();
            assert!(err.to_string().contains(expected), "{expected}: {err}");
        }
    }

    /// Operations are checked like every other item: an unknown reward type and a second
    /// operation with the same code are errors with the file and the item's line.
    #[test]
    fn operations_are_validated_with_their_lines() {
        let op = |code: &str, reward_type: &str| {
            format!(
                "\n[[operations]]\ncode = \"{code}\"\nbuilding_block = \"groups\"\n\
                 reward_type = \"{reward_type}\"\namount = 1\n"
            )
        };
        let good = format!(
            "{GOOD}{}{}",
            op("10_posts", "points"),
            op("survey", "points")
        );
        let c = Catalog::from_sources(&[("c.toml", good)]).unwrap();
        let t = c.default_tenant().unwrap();
        assert_eq!(t.operation("10_posts").unwrap().building_block, "groups");
        assert!(t.operation("nope").is_none());
        let lines = GOOD.lines().count();
        let bad = format!(
            "{GOOD}{}{}",
            op("10_posts", "gold"),
            op("10_posts", "points")
        );
        let err = Catalog::from_sources(&[("c.toml", bad)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "c.toml:{}: operation '10_posts': unknown reward_type 'gold'\n\
                 c.toml:{}: duplicate operation code '10_posts'",
                lines + 2,
                lines + 8
            )
        );
    }

    /// Offers keep their catalog order; a bad id, a second offer with the same id, a price of
    /// 0 and a fractional price are errors with the file and the line.
    #[test]
    fn offers_are_validated_with_their_lines() {
        let offer = |id: &str, points: &str| {
            format!("\n[[offers]]\nid = \"{id}\"\ntitle = \"T\"\npoints = {points}\n")
        };
        let good = format!(
            "{GOOD}{}{}",
            offer("movie-ticket", "500"),
            offer("burger-40", "100")
        );
        let c = Catalog::from_sources(&[("c.toml", good)]).unwrap();
        let t = c.default_tenant().unwrap();
        let ids: Vec<&str> = t.offers.iter().map(|o| o.id.as_str()).collect();
        assert_eq!(ids, ["movie-ticket", "burger-40"]);
        assert_eq!(t.offer("burger-40").unwrap().points, 100);
        assert_eq!(t.offer("burger-40").unwrap().description, "");
        assert!(t.offer("nope").is_none());

        let lines = GOOD.lines().count();
        let bad = format!(
            "{GOOD}{}{}{}",
            offer("a b", "5"),
            offer("coffee", "0"),
            offer("coffee", "3")
        );
        let err = Catalog::from_sources(&[("c.toml", bad)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "c.toml:{}: offer 'a b': id must be 1–36 characters of A-Z a-z 0-9 . _ -\n\
                 c.toml:{}: offer 'coffee': points must be from 1 to 1000000000000000, got 0\n\
                 c.toml:{}: duplicate offer id 'coffee'",
                lines + 2,
                lines + 7,
                lines + 12
            )
        );
        let fractional = format!("{GOOD}{}", offer("coffee", "2.5"));
        let err = Catalog::from_sources(&[("c.toml", fractional)]).unwrap_err();
        assert_eq!(err.0.len(), 1, "{err}");
        assert_eq!(err.0[0].line, lines + 5, "{err}");
        assert!(
            err.0[0]
                .message
                .contains("points must be a whole number of coins, at least 1, got 2.5"),
            "{err}"
        );
    }

    #[test]
    fn tenant_names_are_bounded() {
        let long = format!("tenant = \"{}\"\n{GOOD}", "t".repeat(65));
        let err = Catalog::from_sources(&[("c.toml", long)]).unwrap_err();
        assert!(
            err.to_string()
                .contains("c.toml: tenant must not be blank and at most 64 bytes"),
            "{err}"
        );
        let fits = format!("tenant = \"{}\"\n{GOOD}", "t".repeat(64));
        Catalog::from_sources(&[("c.toml", fits)]).unwrap();
    }

    #[test]
    fn allowed_lateness_is_a_duration_set_once_per_tenant() {
        let c = Catalog::from_sources(&[("c.toml", format!("allowed_lateness = \"36h\"\n{GOOD}"))])
            .unwrap();
        assert_eq!(
            c.default_tenant().unwrap().allowed_lateness,
            chrono::Duration::hours(36)
        );
        let default = Catalog::from_sources(&[("c.toml", GOOD)]).unwrap();
        assert_eq!(
            default.default_tenant().unwrap().allowed_lateness,
            limits::default_allowed_lateness()
        );
        let err =
            Catalog::from_sources(&[("c.toml", format!("allowed_lateness = \"soon\"\n{GOOD}"))])
                .unwrap_err();
        assert!(err.to_string().contains("not a duration"), "{err}");
        assert_eq!(err.0[0].line, 1);
        let err = Catalog::from_sources(&[
            ("a.toml", format!("allowed_lateness = \"1h\"\n{GOOD}")),
            ("b.toml", "allowed_lateness = \"2h\"\n".to_string()),
        ])
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("differs from the tenant's value in a.toml:1"),
            "{err}"
        );
    }
}
