//! A model-based test of the ledger: a small, obviously correct reference model of balances,
//! stock, claim outcomes and expiry, driven by generated sequences of actions, claims (with
//! retried old ids), time passing past expiration dates and stock running out, across several
//! users. After every step the engine's balances, stock and stored claim outcomes must equal
//! the model's.
//!
//! The catalog is small enough to model in a few lines:
//! - trigger 1 ("earn", sum to 100, overshoot discarded, repeatable): 10 points per milestone,
//!   expiring a day after the milestone's event time;
//! - trigger 2 ("visit"): 1 point per visit, credited at once (`auto_claim`), never expiring;
//! - trigger 3 ("post"): a t-shirt per post from a stock of 3 shared by all users, refused
//!   (`depleted`) once the stock is gone.
//!
//! Claims take points out of the balance; a claim id is exactly-once forever.

use crate::support::engine::*;
use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use questline::core::catalog::Catalog;
use questline::core::events::EventBody;
use rust_decimal::Decimal;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

const CATALOG: &str = r#"
[[reward_types]]
reward_type = "points"
[[reward_types]]
reward_type = "tshirt"
kind = "item"
[[inventories]]
id = "shirts"
reward_type = "tshirt"
amount_total = 3
grant_depleted = false

[[triggers]]
id = 1
name = "earn"
[[triggers]]
id = 2
name = "visit"
[[triggers]]
id = 3
name = "post"

[[challenges]]
id = 1
name = "Earner"
repeatable = true
[[challenges.groups]]
id = 1
triggers = [{ trigger = 1, frequency = 100 }]
[[challenges.prizes]]
reward_type = "points"
amount = 10
expires_after_days = 1

[[challenges]]
id = 2
name = "Visitor"
repeatable = true
auto_claim = true
[[challenges.groups]]
id = 1
triggers = [{ trigger = 2, frequency = 1 }]
[[challenges.prizes]]
reward_type = "points"
amount = 1

[[challenges]]
id = 3
name = "Poster"
repeatable = true
[[challenges.groups]]
id = 1
triggers = [{ trigger = 3, frequency = 1 }]
[[challenges.prizes]]
reward_type = "tshirt"
"#;

const STOCK: u64 = 3;

#[derive(Debug, Clone)]
enum Step {
    Earn { user: usize, value: u32 },
    Visit { user: usize },
    Post { user: usize },
    Claim { user: usize, id: usize, points: u32 },
    Wait { minutes: i64 },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..3usize, 1..=150u32).prop_map(|(user, value)| Step::Earn { user, value }),
        2 => (0..3usize).prop_map(|user| Step::Visit { user }),
        1 => (0..3usize).prop_map(|user| Step::Post { user }),
        3 => (0..3usize, 0..6usize, 1..=30u32)
            .prop_map(|(user, id, points)| Step::Claim { user, id, points }),
        2 => (0..1800i64).prop_map(|minutes| Step::Wait { minutes }),
    ]
}

/// The reference model of one user.
#[derive(Debug, Default, Clone)]
struct User {
    points: Decimal,
    tshirts: Decimal,
    earned: u32,
    /// Expiration dates of the unexpired 10-point prizes, oldest first.
    expiring: Vec<DateTime<Utc>>,
    /// Claim id → completed?
    claims: BTreeMap<String, bool>,
}

impl User {
    /// What the engine does first with every input that is not a repeated claim.
    fn expire(&mut self, now: DateTime<Utc>) {
        let due = self.expiring.iter().filter(|e| **e <= now).count();
        self.expiring.retain(|e| *e > now);
        for _ in 0..due {
            self.points = (self.points - Decimal::from(10)).max(Decimal::ZERO);
        }
    }
}

#[derive(Debug, Default)]
struct Model {
    users: [User; 3],
    stock_used: u64,
}

fn run(steps: &[Step]) -> Result<(), TestCaseError> {
    let mut t = Driver::with(Arc::new(
        Catalog::from_sources(&[("ledger.toml", CATALOG)]).unwrap(),
    ));
    let mut model = Model::default();
    for (n, step) in steps.iter().enumerate() {
        let now = t.now;
        match *step {
            Step::Wait { minutes } => {
                t.now += Duration::minutes(minutes);
                continue;
            }
            Step::Earn { user, value } => {
                t.act(&format!("u{user}"), json!(1), json!(value));
                let m = &mut model.users[user];
                m.expire(now);
                m.earned += value;
                if m.earned >= 100 {
                    m.earned = 0;
                    m.points += Decimal::from(10);
                    m.expiring.push(now + Duration::days(1));
                }
            }
            Step::Visit { user } => {
                t.act(&format!("u{user}"), json!(2), json!(1));
                let m = &mut model.users[user];
                m.expire(now);
                m.points += Decimal::ONE;
            }
            Step::Post { user } => {
                t.act(&format!("u{user}"), json!(3), json!(1));
                model.users[user].expire(now);
                if model.stock_used < STOCK {
                    model.stock_used += 1;
                    model.users[user].tshirts += Decimal::ONE;
                }
            }
            Step::Claim { user, id, points } => {
                let claim_id = format!("c{id}");
                let events = t.claim(
                    &format!("u{user}"),
                    &claim_id,
                    &[],
                    &[("points", points.into())],
                );
                let m = &mut model.users[user];
                match m.claims.get(&claim_id) {
                    Some(_) => prop_assert!(
                        events.is_empty(),
                        "step {n}: a retried claim changed something: {events:?}"
                    ),
                    None => {
                        m.expire(now);
                        let ok = m.points >= Decimal::from(points);
                        if ok {
                            m.points -= Decimal::from(points);
                        }
                        m.claims.insert(claim_id.clone(), ok);
                        let completed = events
                            .iter()
                            .any(|e| matches!(&e.body, EventBody::ClaimCompleted { claim_id: id, .. } if *id == claim_id));
                        prop_assert_eq!(completed, ok, "step {}: claim outcome", n);
                    }
                }
            }
        }
        // After every step: balances, stock and stored claim outcomes agree.
        for (u, m) in model.users.iter().enumerate() {
            let user = format!("u{u}");
            let state = t.engine.user("default", &user);
            let points = state.map(|s| s.balance("points")).unwrap_or_default();
            let tshirts = state.map(|s| s.balance("tshirt")).unwrap_or_default();
            prop_assert_eq!(points, m.points, "step {}: points of {}", n, user);
            prop_assert_eq!(tshirts, m.tshirts, "step {}: t-shirts of {}", n, user);
            for (id, ok) in &m.claims {
                let stored = t.engine.claim("default", &user, id);
                let completed =
                    stored.map(|c| matches!(c.event.body, EventBody::ClaimCompleted { .. }));
                prop_assert_eq!(
                    completed,
                    Some(*ok),
                    "step {}: stored outcome of {} of {}",
                    n,
                    id,
                    user
                );
            }
        }
        let granted: u64 = t
            .engine
            .resource("default/reward/tshirt")
            .map(|r| r.granted.values().sum())
            .unwrap_or(0);
        prop_assert_eq!(granted, model.stock_used, "step {}: stock", n);
    }
    Ok(())
}

proptest! {
    #![proptest_config(crate::support::props::config(crate::support::props::cases_from("QL_LEDGER_CASES", 2000)))]

    #[test]
    fn the_ledger_equals_its_reference_model(steps in prop::collection::vec(step(), 1..80)) {
        run(&steps)?;
    }
}
