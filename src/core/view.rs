//! The progress query (`GetProgressChallengesInfoForUser`) as a pure function.
//!
//! `(tenant catalog, user state, people finished, now, languages, query) -> page`. No IO and
//! no clock: the sidecar loads the state and the counters, reads the clock once, and calls
//! [`progress_page`]; the tests call it with fixed values. Trigger numbers come from
//! [`progress_of`], the very function that computes `progress.updated` events, so the query
//! and the events never disagree (the seed's walk-through: 200 of 1000 points is
//! `actionLeft` 800 and `progress` 20).
//!
//! # Decisions (docs/http-api.md, "Progress", says the same for users)
//!
//! - **`pagesNum` is the number of pages**, `ceil(count / ItemsPerPage)` (0 when nothing
//!   matches). The seed's field list calls it "the current page number", but its name, the
//!   contract's `pagesNum`, and what a pager needs all say "number of pages": the client already
//!   knows the page it asked for, while the page count is the one thing it cannot see otherwise.
//! - **`count`** is the number of challenges matching the filters, across all pages.
//! - **A page past the end** is not an error: `data` is empty, `count` and `pagesNum` are
//!   still right, so a client that paged while the catalog shrank learns where the end is.
//! - **`ItemsPerPage` outside 1–[`MAX_ITEMS_PER_PAGE`] and `Page` 0 are rejected** (the caller
//!   answers 400 naming the field) rather than clamped: a clamped page size would silently
//!   break the client's own paging arithmetic.
//! - **Order** is total and stable: the chosen field, then the challenge id ascending as the
//!   tie-break, so paging never loses or repeats a challenge. Missing dates sort as "forever":
//!   an open start before every date, an open end (and an open `endsAfter`) after every date.
//! - **Left out**: hidden challenges (`visible = false`), and limited challenges
//!   (`max_winners`) of which the user has claimed a milestone. Locked challenges are listed
//!   with `isLocked: true`; challenges outside their window are listed with their dates.
//! - **`endsAfter`** is whole days left, rounded up (a challenge ending in 5 hours has 1 day
//!   left, not 0), 0 once ended, `null` when open-ended.
//! - **Search** is a case-insensitive substring of the name in the response's language.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::BTreeMap;
use std::ops::Range;
use utoipa::ToSchema;

use super::catalog::{Challenge, TenantCatalog};
use super::decimal;
use super::evaluator::progress_of;
use super::events::PrizeInfo;
use super::state::{ChallengeState, UserState};

/// `ItemsPerPage` when the query does not say.
pub const DEFAULT_ITEMS_PER_PAGE: u32 = 10;
/// The largest page a client may ask for; bounds the work and the size of one response.
pub const MAX_ITEMS_PER_PAGE: u32 = 100;
/// At most this many `Accept-Language` entries are considered; the rest is ignored.
pub const MAX_LANGUAGES: usize = 16;

/// A query parameter that cannot be used, and why; the sidecar answers 400 naming `field`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct QueryError {
    pub field: String,
    pub message: String,
}

impl QueryError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        QueryError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A validated page request: 1-based page, 1–[`MAX_ITEMS_PER_PAGE`] items per page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    page: u32,
    items_per_page: u32,
}

impl Default for Paging {
    fn default() -> Self {
        Paging {
            page: 1,
            items_per_page: DEFAULT_ITEMS_PER_PAGE,
        }
    }
}

impl Paging {
    /// Validates a page request. `names` are the parameters' names as the client spelled
    /// them (`("Page", "ItemsPerPage")` for the seed's query, camelCase for native ones), so
    /// the error names the field the client sent.
    pub fn new(
        page: Option<u32>,
        items_per_page: Option<u32>,
        names: (&str, &str),
    ) -> Result<Paging, QueryError> {
        let page = page.unwrap_or(1);
        let items_per_page = items_per_page.unwrap_or(DEFAULT_ITEMS_PER_PAGE);
        if page == 0 {
            return Err(QueryError::new(
                names.0,
                format!("{} must be 1 or more (pages are numbered from 1)", names.0),
            ));
        }
        if !(1..=MAX_ITEMS_PER_PAGE).contains(&items_per_page) {
            return Err(QueryError::new(
                names.1,
                format!(
                    "{} must be between 1 and {MAX_ITEMS_PER_PAGE}, got {items_per_page}",
                    names.1
                ),
            ));
        }
        Ok(Paging {
            page,
            items_per_page,
        })
    }

    pub fn page(&self) -> u32 {
        self.page
    }

    pub fn items_per_page(&self) -> u32 {
        self.items_per_page
    }

    /// How many pages `count` items fill (0 for none).
    pub fn pages(&self, count: u64) -> u64 {
        count.div_ceil(u64::from(self.items_per_page))
    }

    /// The slice of `count` sorted items on this page; empty past the end.
    pub fn range(&self, count: usize) -> Range<usize> {
        let per = self.items_per_page as usize;
        let start = (self.page as usize - 1).saturating_mul(per).min(count);
        let end = start.saturating_add(per).min(count);
        start..end
    }
}

/// The fields a progress page can be ordered by (`OrderBy`, case-insensitive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OrderBy {
    #[default]
    Id,
    Name,
    Description,
    StartDate,
    EndDate,
    PeopleFinished,
    EndsAfter,
    IsLocked,
    Visible,
    /// The category's id (the same id `CategoryId` filters on).
    Category,
}

impl OrderBy {
    /// Every accepted name, as the response spells the field.
    pub const NAMES: [&'static str; 10] = [
        "id",
        "name",
        "description",
        "startdate",
        "enddate",
        "peopleFinished",
        "endsAfter",
        "isLocked",
        "visible",
        "category",
    ];

    /// Reads a field name case-insensitively (`Id`, `id`, `PEOPLEFINISHED` …); `categoryId`
    /// is accepted for `category`.
    pub fn parse(text: &str) -> Option<OrderBy> {
        let all = [
            OrderBy::Id,
            OrderBy::Name,
            OrderBy::Description,
            OrderBy::StartDate,
            OrderBy::EndDate,
            OrderBy::PeopleFinished,
            OrderBy::EndsAfter,
            OrderBy::IsLocked,
            OrderBy::Visible,
            OrderBy::Category,
        ];
        let text = text.trim();
        if text.eq_ignore_ascii_case("categoryId") {
            return Some(OrderBy::Category);
        }
        Self::NAMES
            .iter()
            .position(|n| n.eq_ignore_ascii_case(text))
            .map(|i| all[i])
    }
}

/// The progress query's parameters after parsing (the seed's names in comments).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProgressQuery {
    /// `CategoryId`: only challenges of this category.
    pub category_id: Option<u32>,
    /// `Page` and `ItemsPerPage`.
    pub paging: Paging,
    /// `SearchQuery`: a case-insensitive substring of the name in the response's language.
    pub search: Option<String>,
    /// `OrderBy`, default `Id`.
    pub order_by: OrderBy,
    /// `IsAscending`, default true.
    pub ascending: bool,
}

impl ProgressQuery {
    /// The seed's defaults: page 1 of 10, by id, ascending.
    pub fn new() -> Self {
        ProgressQuery {
            ascending: true,
            ..Default::default()
        }
    }
}

/// Everything the query reads besides its parameters.
#[derive(Debug, Clone, Copy)]
pub struct ProgressInput<'a> {
    pub catalog: &'a TenantCatalog,
    /// Shown as `userID` on milestones.
    pub user_id: &'a str,
    /// `None` for a user the engine has never seen: every challenge at 0.
    pub state: Option<&'a UserState>,
    /// Per challenge, how many users achieved it.
    pub people_finished: &'a BTreeMap<u32, u64>,
    pub now: DateTime<Utc>,
    /// Preferred languages, best first (see [`parse_accept_language`]).
    pub languages: &'a [String],
}

/// One page of the progress query: `{data, pagesNum, count}`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProgressPage {
    pub data: Vec<ChallengeView>,
    /// The number of pages (see the module docs for why not "the current page").
    pub pages_num: u64,
    /// Challenges matching the filters, across all pages.
    pub count: u64,
}

/// A challenge with the user's progress, in the seed's field names.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChallengeView {
    pub id: u32,
    pub name: String,
    pub description: String,
    pub startdate: Option<DateTime<Utc>>,
    pub enddate: Option<DateTime<Utc>>,
    pub people_finished: u64,
    /// Whole days left, rounded up; 0 once ended; null when open-ended.
    pub ends_after: Option<i64>,
    /// Waiting until the parent challenge is achieved.
    pub is_locked: bool,
    pub visible: bool,
    pub category: Option<CategoryView>,
    /// The image's URL (presigned by the sidecar when images live in a bucket).
    pub image: Option<String>,
    /// Unclaimed milestones of this challenge (claimed ones move to history).
    pub prizes: Vec<MilestoneView>,
    pub group_progress: Vec<GroupProgressView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CategoryView {
    pub id: u32,
    pub name: String,
}

/// An unclaimed milestone and its prizes.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MilestoneView {
    #[serde(rename = "userID")]
    pub user_id: String,
    pub milestone_id: String,
    pub prizes: Vec<PrizeView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrizeView {
    /// Points amount or voucher code (null while a code is being drawn).
    pub value: Option<String>,
    pub expiration_date: Option<DateTime<Utc>>,
    pub description: String,
    pub reward_type: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupProgressView {
    pub group_id: u32,
    pub group_order: u32,
    /// `AND` / `OR`: joins this group to the one before it (ignored on the first).
    pub operator: &'static str,
    pub triggers_progress: Vec<TriggerProgressView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TriggerProgressView {
    pub trigger_id: u32,
    pub trigger_type: u32,
    pub trigger_name: String,
    pub trigger_order: u32,
    /// `AND` / `OR`: joins this trigger to the one before it (ignored on the first).
    pub operator: &'static str,
    #[serde(serialize_with = "decimal::serialize")]
    #[schema(value_type = f64)]
    pub trigger_frequency: Decimal,
    #[serde(serialize_with = "decimal::serialize")]
    #[schema(value_type = f64)]
    pub action_left: Decimal,
    /// Percent, 0–100, truncated to two decimals.
    #[serde(serialize_with = "decimal::serialize")]
    #[schema(value_type = f64)]
    pub progress: Decimal,
}

/// Whether a challenge is listed for this user at all.
fn listed(challenge: &Challenge, state: Option<&UserState>) -> bool {
    if !challenge.visible {
        return false;
    }
    let claimed = state.is_some_and(|s| s.claimed_challenges.contains(&challenge.id));
    !(challenge.is_limited() && claimed)
}

fn is_locked(challenge: &Challenge, state: Option<&UserState>) -> bool {
    challenge
        .parent
        .is_some_and(|p| !state.is_some_and(|s| s.has_achieved(p)))
}

/// Whole days from `now` until `end`, rounded up, never negative.
fn ends_after(end: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<i64> {
    end.map(|end| {
        let seconds = (end - now).num_seconds();
        if seconds <= 0 {
            0
        } else {
            (seconds + 86_399) / 86_400
        }
    })
}

/// A sort key; within one query every row has the same variant.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Number(i64),
    Text(String),
}

fn key_of(challenge: &Challenge, name: &str, input: &ProgressInput<'_>, order_by: OrderBy) -> Key {
    let date = |d: Option<DateTime<Utc>>, open: i64| d.map_or(open, |d| d.timestamp());
    match order_by {
        OrderBy::Id => Key::Number(i64::from(challenge.id)),
        OrderBy::Name => Key::Text(name.to_lowercase()),
        OrderBy::Description => {
            Key::Text(challenge.description.pick(input.languages).to_lowercase())
        }
        OrderBy::StartDate => Key::Number(date(challenge.start, i64::MIN)),
        OrderBy::EndDate => Key::Number(date(challenge.end, i64::MAX)),
        OrderBy::PeopleFinished => {
            let n = input.people_finished.get(&challenge.id).copied();
            Key::Number(i64::try_from(n.unwrap_or(0)).unwrap_or(i64::MAX))
        }
        OrderBy::EndsAfter => Key::Number(ends_after(challenge.end, input.now).unwrap_or(i64::MAX)),
        OrderBy::IsLocked => Key::Number(i64::from(is_locked(challenge, input.state))),
        OrderBy::Visible => Key::Number(i64::from(challenge.visible)),
        OrderBy::Category => Key::Number(challenge.category.map_or(-1, i64::from)),
    }
}

/// Runs the progress query: filter, order, page, then build only the page's challenges.
pub fn progress_page(input: &ProgressInput<'_>, query: &ProgressQuery) -> ProgressPage {
    let needle = query
        .search
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_lowercase);
    let mut rows: Vec<(Key, &Challenge)> = input
        .catalog
        .challenges
        .iter()
        .filter(|c| listed(c, input.state))
        .filter(|c| query.category_id.is_none_or(|id| c.category == Some(id)))
        .filter_map(|c| {
            let name = c.name.pick(input.languages);
            if let Some(needle) = &needle {
                if !name.to_lowercase().contains(needle.as_str()) {
                    return None;
                }
            }
            Some((key_of(c, name, input, query.order_by), c))
        })
        .collect();
    rows.sort_by(|(ka, a), (kb, b)| {
        let by_key = if query.ascending {
            ka.cmp(kb)
        } else {
            kb.cmp(ka)
        };
        by_key.then(a.id.cmp(&b.id))
    });
    let count = rows.len();
    let data = rows[query.paging.range(count)]
        .iter()
        .map(|(_, c)| challenge_view(input, c))
        .collect();
    let count = count as u64;
    ProgressPage {
        data,
        pages_num: query.paging.pages(count),
        count,
    }
}

/// Builds one challenge's view, in the response's language.
pub fn challenge_view(input: &ProgressInput<'_>, challenge: &Challenge) -> ChallengeView {
    let langs = input.languages;
    let catalog = input.catalog;
    let progress = input.state.and_then(|s| s.challenges.get(&challenge.id));
    ChallengeView {
        id: challenge.id,
        name: challenge.name.pick(langs).to_string(),
        description: challenge.description.pick(langs).to_string(),
        startdate: challenge.start,
        enddate: challenge.end,
        people_finished: input
            .people_finished
            .get(&challenge.id)
            .copied()
            .unwrap_or(0),
        ends_after: ends_after(challenge.end, input.now),
        is_locked: is_locked(challenge, input.state),
        visible: challenge.visible,
        category: challenge.category.map(|id| CategoryView {
            id,
            name: catalog
                .category(id)
                .map(|c| c.name.pick(langs).to_string())
                .unwrap_or_default(),
        }),
        image: challenge.image.clone(),
        prizes: milestones(input, challenge),
        group_progress: groups(input, challenge, progress),
    }
}

/// The user's unclaimed milestones of a challenge, prize descriptions in the response's
/// language when the catalog still has the prize (the stored one was written in the default).
fn milestones(input: &ProgressInput<'_>, challenge: &Challenge) -> Vec<MilestoneView> {
    let Some(state) = input.state else {
        return Vec::new();
    };
    state
        .milestones
        .iter()
        .filter(|m| m.challenge_id == challenge.id)
        .map(|m| MilestoneView {
            user_id: input.user_id.to_string(),
            milestone_id: m.milestone_id.clone(),
            prizes: m
                .prizes
                .iter()
                .map(|p| prize(input, challenge, p))
                .collect(),
        })
        .collect()
}

fn prize(input: &ProgressInput<'_>, challenge: &Challenge, p: &PrizeInfo) -> PrizeView {
    let description = challenge
        .prizes
        .iter()
        .find(|c| c.reward_type == p.reward_type)
        .map(|c| c.description.pick(input.languages).to_string())
        .unwrap_or_else(|| p.description.clone());
    PrizeView {
        value: p.value.clone(),
        expiration_date: p.expiration_date,
        description,
        reward_type: p.reward_type.clone(),
    }
}

fn groups(
    input: &ProgressInput<'_>,
    challenge: &Challenge,
    progress: Option<&ChallengeState>,
) -> Vec<GroupProgressView> {
    challenge
        .groups
        .iter()
        .map(|g| GroupProgressView {
            group_id: g.id,
            group_order: g.order,
            operator: g.operator.as_str(),
            triggers_progress: g
                .triggers
                .iter()
                .map(|req| {
                    let def = input.catalog.trigger(req.trigger);
                    let (accumulated, met) = progress
                        .and_then(|cs| cs.trigger(g.id, req.trigger))
                        .map_or((Decimal::ZERO, false), |tp| (tp.accumulated, tp.met));
                    let aggregation = def.map(|d| d.aggregation).unwrap_or_default();
                    let (action_left, percent) =
                        progress_of(aggregation, req.frequency, accumulated, met);
                    TriggerProgressView {
                        trigger_id: req.trigger,
                        trigger_type: def.map_or(0, |d| d.trigger_type),
                        trigger_name: def
                            .map(|d| d.name.pick(input.languages).to_string())
                            .unwrap_or_default(),
                        trigger_order: req.order,
                        operator: req.operator.as_str(),
                        trigger_frequency: req.frequency.normalize(),
                        action_left,
                        progress: percent,
                    }
                })
                .collect(),
        })
        .collect()
}

/// Parses an `Accept-Language` header (RFC 9110 §12.5.4) into language tags, best first.
///
/// Entries with `q=0`, malformed tags or quality values, and the wildcard `*` are dropped
/// (the catalog's own fallback — English, then the first translation — plays the wildcard's
/// role); ties keep the header's order. Tags are lowercased, as the catalog's keys are. At
/// most [`MAX_LANGUAGES`] entries are read, so a hostile header costs bounded work.
pub fn parse_accept_language(header: &str) -> Vec<String> {
    let mut entries: Vec<(u16, String)> = Vec::new();
    for entry in header.split(',').take(MAX_LANGUAGES) {
        let mut parts = entry.split(';');
        let tag = parts.next().unwrap_or("").trim();
        let valid_tag = !tag.is_empty()
            && tag.len() <= 35
            && tag.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !valid_tag {
            continue;
        }
        let mut quality = Some(1000u16);
        for param in parts {
            let param = param.trim();
            if let Some(q) = param
                .strip_prefix("q=")
                .or_else(|| param.strip_prefix("Q="))
            {
                quality = parse_quality(q.trim());
            }
        }
        match quality {
            Some(q) if q > 0 => entries.push((q, tag.to_ascii_lowercase())),
            _ => {}
        }
    }
    // Stable: equal qualities keep the header's order.
    entries.sort_by_key(|e| std::cmp::Reverse(e.0));
    entries.into_iter().map(|(_, tag)| tag).collect()
}

/// A quality value (`0`, `0.5`, `1.000`) in thousandths; `None` when malformed.
fn parse_quality(text: &str) -> Option<u16> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    if frac.len() > 3 || !frac.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let thousandths = format!("{frac:0<3}").parse::<u16>().ok()?;
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::catalog::Catalog;
    use crate::core::state::{Milestone, TriggerProgress};
    use chrono::TimeZone;
    use std::str::FromStr;

    const TRIGGERS: &str = r#"
[[categories]]
id = 1
name = { en = "Points", ar = "النقاط" }
[[categories]]
id = 2
name = "Vouchers"
[[reward_types]]
reward_type = "points"
[[triggers]]
id = 1
name = { en = "Earned Points", ar = "النقاط المكتسبة" }
type = 2
[[triggers]]
id = 6
name = "Hit Tier"
type = 3
aggregation = "match"
"#;

    fn catalog(challenges: &str) -> Catalog {
        Catalog::from_sources(&[("t.toml", format!("{TRIGGERS}\n{challenges}"))])
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn seed_catalog() -> Catalog {
        catalog(
            r#"
[[challenges]]
id = 1
name = { en = "Earn 1000 Points", ar = "اكسب 1000 نقطة" }
description = { en = "Earn points", ar = "اكسب النقاط" }
category = 1
image = "challenges/earn.png"
[[challenges.groups]]
id = 1
order = 1
triggers = [{ trigger = 1, order = 1, frequency = 1000 }]
[[challenges.prizes]]
reward_type = "points"
amount = 40
description = { en = "40 points", ar = "40 نقطة" }

[[challenges]]
id = 2
name = "Gold tier"
category = 2
parent = 1
end = "2026-11-30T00:00:00Z"
[[challenges.groups]]
id = 1
triggers = [{ trigger = 6, frequency = 3 }]

[[challenges]]
id = 3
name = "Secret"
visible = false
[[challenges.groups]]
id = 1
triggers = [{ trigger = 1, frequency = 5 }]

[[challenges]]
id = 4
name = "Limited"
max_winners = 2
start = "2026-01-01T00:00:00Z"
[[challenges.groups]]
id = 1
triggers = [{ trigger = 1, frequency = 5 }]
"#,
        )
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap()
    }

    fn run(
        catalog: &Catalog,
        state: Option<&UserState>,
        langs: &[&str],
        query: &ProgressQuery,
    ) -> ProgressPage {
        let languages: Vec<String> = langs.iter().map(|s| s.to_string()).collect();
        let finished = BTreeMap::from([(1, 7), (2, 3)]);
        let input = ProgressInput {
            catalog: catalog.default_tenant().unwrap(),
            user_id: "151631",
            state,
            people_finished: &finished,
            now: now(),
            languages: &languages,
        };
        progress_page(&input, query)
    }

    fn ids(page: &ProgressPage) -> Vec<u32> {
        page.data.iter().map(|c| c.id).collect()
    }

    fn with_points(points: i64) -> UserState {
        let mut state = UserState::default();
        state
            .challenges
            .entry(1)
            .or_default()
            .triggers
            .push(TriggerProgress {
                group: 1,
                trigger: 1,
                accumulated: points.into(),
                met: false,
            });
        state
    }

    #[test]
    fn the_seed_walk_through_matches_the_events_numbers() {
        let c = seed_catalog();
        for (points, left, percent) in [(0, 1000, 0), (200, 800, 20), (500, 500, 50)] {
            let state = with_points(points);
            let page = run(&c, Some(&state), &[], &ProgressQuery::new());
            let t = &page.data[0].group_progress[0].triggers_progress[0];
            assert_eq!(t.trigger_frequency, Decimal::from(1000));
            assert_eq!(t.action_left, Decimal::from(left), "{points}");
            assert_eq!(t.progress, Decimal::from(percent), "{points}");
            assert_eq!(t.trigger_name, "Earned Points");
            assert_eq!(t.trigger_type, 2);
        }
    }

    #[test]
    fn hidden_and_claimed_limited_challenges_are_left_out() {
        let c = seed_catalog();
        let page = run(&c, None, &[], &ProgressQuery::new());
        assert_eq!(ids(&page), vec![1, 2, 4]);
        assert_eq!(page.count, 3);
        assert_eq!(page.pages_num, 1);
        let mut state = UserState::default();
        state.claimed_challenges.push(4);
        state.claimed_challenges.push(1); // not limited: stays
        assert_eq!(
            ids(&run(&c, Some(&state), &[], &ProgressQuery::new())),
            vec![1, 2]
        );
    }

    #[test]
    fn locked_until_the_parent_is_achieved() {
        let c = seed_catalog();
        let page = run(&c, None, &[], &ProgressQuery::new());
        assert!(page.data[1].is_locked);
        let mut state = UserState::default();
        state.challenges.entry(1).or_default().wins = 1;
        let page = run(&c, Some(&state), &[], &ProgressQuery::new());
        assert!(!page.data[1].is_locked);
    }

    #[test]
    fn fields_dates_category_and_people() {
        let c = seed_catalog();
        let page = run(&c, None, &["ar"], &ProgressQuery::new());
        let first = &page.data[0];
        assert_eq!(first.name, "اكسب 1000 نقطة");
        assert_eq!(first.description, "اكسب النقاط");
        assert_eq!(first.category.as_ref().unwrap().name, "النقاط");
        assert_eq!(first.people_finished, 7);
        assert_eq!(first.ends_after, None);
        assert_eq!(first.image.as_deref(), Some("challenges/earn.png"));
        assert_eq!(
            first.group_progress[0].triggers_progress[0].trigger_name,
            "النقاط المكتسبة"
        );
        // Ends 2026-11-30T00:00, now 2026-11-25T10:00: 4 days 14 hours → 5 days.
        assert_eq!(page.data[1].ends_after, Some(5));
        assert_eq!(page.data[1].category.as_ref().unwrap().name, "Vouchers");
        assert_eq!(page.data[2].category, None);
        assert_eq!(ends_after(Some(now()), now()), Some(0));
        assert_eq!(
            ends_after(Some(now() - chrono::Duration::days(3)), now()),
            Some(0)
        );
        assert_eq!(
            ends_after(Some(now() + chrono::Duration::hours(5)), now()),
            Some(1)
        );
    }

    #[test]
    fn prizes_show_unclaimed_milestones_in_the_language_asked() {
        let c = seed_catalog();
        let mut state = UserState::default();
        state.milestones.push(Milestone {
            milestone_id: "1-1".into(),
            challenge_id: 1,
            achieved_at: now(),
            prizes: vec![PrizeInfo {
                value: Some("40".into()),
                expiration_date: None,
                description: "40 points".into(),
                reward_type: "points".into(),
            }],
        });
        let page = run(&c, Some(&state), &["ar"], &ProgressQuery::new());
        let m = &page.data[0].prizes;
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].user_id, "151631");
        assert_eq!(m[0].milestone_id, "1-1");
        assert_eq!(m[0].prizes[0].description, "40 نقطة");
        assert_eq!(m[0].prizes[0].value.as_deref(), Some("40"));
        assert!(page.data[1].prizes.is_empty());
        let json = serde_json::to_value(&page).unwrap();
        assert_eq!(json["data"][0]["prizes"][0]["userID"], "151631");
        assert_eq!(
            json["data"][0]["groupProgress"][0]["triggersProgress"][0]["actionLeft"],
            1000
        );
        assert_eq!(json["pagesNum"], 1);
    }

    #[test]
    fn match_triggers_show_one_action_left_until_met() {
        let c = seed_catalog();
        let mut state = UserState::default();
        state.challenges.entry(1).or_default().wins = 1;
        let page = run(&c, Some(&state), &[], &ProgressQuery::new());
        let t = &page.data[1].group_progress[0].triggers_progress[0];
        assert_eq!((t.action_left, t.progress), (Decimal::ONE, Decimal::ZERO));
        state
            .challenges
            .entry(2)
            .or_default()
            .triggers
            .push(TriggerProgress {
                group: 1,
                trigger: 6,
                accumulated: 3.into(),
                met: true,
            });
        let page = run(&c, Some(&state), &[], &ProgressQuery::new());
        let t = &page.data[1].group_progress[0].triggers_progress[0];
        assert_eq!(
            (t.action_left, t.progress),
            (Decimal::ZERO, Decimal::ONE_HUNDRED)
        );
    }

    #[test]
    fn category_filter_and_search_in_the_language_asked() {
        let c = seed_catalog();
        let q = |category: Option<u32>, search: Option<&str>| ProgressQuery {
            category_id: category,
            search: search.map(str::to_string),
            ..ProgressQuery::new()
        };
        assert_eq!(ids(&run(&c, None, &[], &q(Some(1), None))), vec![1]);
        assert_eq!(
            ids(&run(&c, None, &[], &q(Some(9), None))),
            Vec::<u32>::new()
        );
        assert_eq!(ids(&run(&c, None, &[], &q(None, Some("EARN")))), vec![1]);
        assert_eq!(ids(&run(&c, None, &[], &q(None, Some("  tier ")))), vec![2]);
        assert_eq!(
            ids(&run(&c, None, &["ar"], &q(None, Some("اكسب")))),
            vec![1]
        );
        // The search is on the name the client sees: English text does not match Arabic names.
        assert_eq!(
            ids(&run(&c, None, &["ar"], &q(None, Some("earn")))),
            Vec::<u32>::new()
        );
        assert_eq!(ids(&run(&c, None, &[], &q(None, Some("")))), vec![1, 2, 4]);
        // The secret challenge is not found by its name either.
        assert_eq!(
            ids(&run(&c, None, &[], &q(None, Some("secret")))),
            Vec::<u32>::new()
        );
    }

    #[test]
    fn ordering_by_every_field_both_ways() {
        let c = seed_catalog();
        let q = |order_by: OrderBy, ascending: bool| ProgressQuery {
            order_by,
            ascending,
            ..ProgressQuery::new()
        };
        let cases = [
            (OrderBy::Id, vec![1, 2, 4]),
            (OrderBy::Name, vec![1, 2, 4]),
            (OrderBy::Description, vec![2, 4, 1]),
            (OrderBy::StartDate, vec![1, 2, 4]),
            (OrderBy::EndDate, vec![2, 1, 4]),
            (OrderBy::PeopleFinished, vec![4, 2, 1]),
            (OrderBy::EndsAfter, vec![2, 1, 4]),
            (OrderBy::IsLocked, vec![1, 4, 2]),
            (OrderBy::Visible, vec![1, 2, 4]),
            (OrderBy::Category, vec![4, 1, 2]),
        ];
        for (order, expected) in cases {
            assert_eq!(
                ids(&run(&c, None, &[], &q(order, true))),
                expected,
                "{order:?}"
            );
        }
        assert_eq!(
            ids(&run(&c, None, &[], &q(OrderBy::Id, false))),
            vec![4, 2, 1]
        );
        assert_eq!(
            ids(&run(&c, None, &[], &q(OrderBy::PeopleFinished, false))),
            vec![1, 2, 4]
        );
        // Ties keep the id order whichever the direction.
        assert_eq!(
            ids(&run(&c, None, &[], &q(OrderBy::Visible, false))),
            vec![1, 2, 4]
        );
    }

    #[test]
    fn order_by_names_are_case_insensitive() {
        assert_eq!(OrderBy::parse("Id"), Some(OrderBy::Id));
        assert_eq!(
            OrderBy::parse("PEOPLEFINISHED"),
            Some(OrderBy::PeopleFinished)
        );
        assert_eq!(OrderBy::parse("startDate"), Some(OrderBy::StartDate));
        assert_eq!(OrderBy::parse("endsafter"), Some(OrderBy::EndsAfter));
        assert_eq!(OrderBy::parse("CategoryId"), Some(OrderBy::Category));
        assert_eq!(OrderBy::parse("progress"), None);
        for name in OrderBy::NAMES {
            assert!(OrderBy::parse(name).is_some(), "{name}");
        }
    }

    #[test]
    fn paging_edges() {
        let c = seed_catalog();
        let q = |page: u32, per: u32| ProgressQuery {
            paging: Paging::new(Some(page), Some(per), ("Page", "ItemsPerPage")).unwrap(),
            ..ProgressQuery::new()
        };
        let p = run(&c, None, &[], &q(1, 2));
        assert_eq!((ids(&p), p.pages_num, p.count), (vec![1, 2], 2, 3));
        let p = run(&c, None, &[], &q(2, 2));
        assert_eq!((ids(&p), p.pages_num, p.count), (vec![4], 2, 3));
        let p = run(&c, None, &[], &q(3, 2));
        assert_eq!((ids(&p), p.pages_num, p.count), (vec![], 2, 3));
        let p = run(&c, None, &[], &q(u32::MAX, 100));
        assert_eq!((ids(&p), p.pages_num, p.count), (vec![], 1, 3));
        let err = Paging::new(Some(1), Some(0), ("Page", "ItemsPerPage")).unwrap_err();
        assert_eq!(err.field, "ItemsPerPage");
        assert!(err.message.contains("between 1 and 100"), "{err}");
        let err = Paging::new(Some(1), Some(1000), ("Page", "ItemsPerPage")).unwrap_err();
        assert_eq!(err.field, "ItemsPerPage");
        let err = Paging::new(Some(0), None, ("page", "itemsPerPage")).unwrap_err();
        assert_eq!(err.field, "page");
        assert_eq!(Paging::default().pages(0), 0);
    }

    #[test]
    fn accept_language_by_quality() {
        assert_eq!(parse_accept_language("ar"), vec!["ar"]);
        assert_eq!(
            parse_accept_language("en;q=0.5, ar-EG , fr;q=0.8"),
            vec!["ar-eg", "fr", "en"]
        );
        assert_eq!(parse_accept_language("de;q=0, *;q=0.1, en"), vec!["en"]);
        assert_eq!(
            parse_accept_language("x;q=2, y;q=abc, ;q=1, <script>"),
            Vec::<String>::new()
        );
        assert_eq!(
            parse_accept_language("en;q=1.000,ar;q=0.999"),
            vec!["en", "ar"]
        );
        assert_eq!(parse_accept_language(""), Vec::<String>::new());
        let long = "en,".repeat(10_000);
        assert_eq!(parse_accept_language(&long).len(), MAX_LANGUAGES);
    }

    #[test]
    fn decimal_frequencies_keep_their_exact_value() {
        let c = catalog(
            r#"
[[challenges]]
id = 1
name = "Half"
[[challenges.groups]]
id = 1
triggers = [{ trigger = 1, frequency = "2.50" }]
"#,
        );
        let mut state = UserState::default();
        state
            .challenges
            .entry(1)
            .or_default()
            .triggers
            .push(TriggerProgress {
                group: 1,
                trigger: 1,
                accumulated: Decimal::from_str("1").unwrap(),
                met: false,
            });
        let page = run(&c, Some(&state), &[], &ProgressQuery::new());
        let json =
            serde_json::to_value(&page.data[0].group_progress[0].triggers_progress[0]).unwrap();
        assert_eq!(json["triggerFrequency"], serde_json::json!(2.5));
        assert_eq!(json["actionLeft"], serde_json::json!(1.5));
        assert_eq!(json["progress"], serde_json::json!(40));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// A catalog of `n` challenges with names, categories and dates drawn by proptest.
        /// (name, category, start in days from now, length in days, visible).
        type Spec = (u8, u8, Option<i64>, Option<i64>, bool);

        fn generated(specs: &[Spec]) -> Catalog {
            let mut text = String::new();
            for (i, (name, category, start, length, visible)) in specs.iter().enumerate() {
                // The catalog requires start < end: the end is the start plus a length.
                let end = length.map(|l| start.unwrap_or(0) + l);
                let date = |d: &Option<i64>, key: &str| {
                    d.map(|days| {
                        let at = now() + chrono::Duration::days(days);
                        format!(
                            "{key} = \"{}\"\n",
                            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                        )
                    })
                    .unwrap_or_default()
                };
                text.push_str(&format!(
                    "[[challenges]]\nid = {}\nname = \"challenge {}\"\ncategory = {}\nvisible = {visible}\n{}{}\
                     [[challenges.groups]]\nid = 1\ntriggers = [{{ trigger = 1, frequency = 10 }}]\n",
                    i + 1,
                    name % 5,
                    category % 2 + 1,
                    date(start, "start"),
                    date(&end, "end"),
                ));
            }
            catalog(&text)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(200))]

            /// Walking every page of any query yields each matching challenge exactly once,
            /// in the same order as one big page.
            #[test]
            fn paging_never_loses_or_duplicates_a_challenge(
                specs in prop::collection::vec(
                    (any::<u8>(), any::<u8>(), prop::option::of(-30i64..30), prop::option::of(1i64..60), prop::bool::weighted(0.8)),
                    0..40,
                ),
                order in 0usize..OrderBy::NAMES.len(),
                ascending in any::<bool>(),
                per_page in 1u32..=12,
                category in prop::option::of(1u32..=3),
                search in prop::option::of(prop::sample::select(vec!["", "challenge", "1", "CHALLENGE 3"])),
            ) {
                let c = generated(&specs);
                let base = ProgressQuery {
                    category_id: category,
                    search: search.map(str::to_string),
                    order_by: OrderBy::parse(OrderBy::NAMES[order]).unwrap(),
                    ascending,
                    paging: Paging::default(),
                };
                let everything = run(&c, None, &[], &ProgressQuery {
                    paging: Paging::new(Some(1), Some(MAX_ITEMS_PER_PAGE), ("Page", "ItemsPerPage")).unwrap(),
                    ..base.clone()
                });
                let mut walked = Vec::new();
                let mut page_no = 1;
                loop {
                    let page = run(&c, None, &[], &ProgressQuery {
                        paging: Paging::new(Some(page_no), Some(per_page), ("Page", "ItemsPerPage")).unwrap(),
                        ..base.clone()
                    });
                    prop_assert_eq!(page.count, everything.count);
                    prop_assert_eq!(page.pages_num, everything.count.div_ceil(u64::from(per_page)));
                    prop_assert!(page.data.len() <= per_page as usize);
                    if page.data.is_empty() {
                        prop_assert!(u64::from(page_no) > page.pages_num);
                        break;
                    }
                    walked.extend(ids(&page));
                    page_no += 1;
                }
                prop_assert_eq!(&walked, &ids(&everything));
                let mut unique = walked.clone();
                unique.sort_unstable();
                unique.dedup();
                prop_assert_eq!(unique.len(), walked.len());
                prop_assert_eq!(walked.len() as u64, everything.count);
            }
        }
    }
}
