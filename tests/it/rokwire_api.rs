//! The Rokwire API against `questline demo` (the real worker on the in-process log, the
//! embedded store and the sidecar), with reqwest as an independent client: operation grants
//! by the right service once per id, 403 for another service with nothing granted, depletion
//! through the same inventory stage as prizes, and claims listed with their items.

use crate::support::demo::Demo;
use questline::http::auth::Signed;
use questline::http::rokwire::DEMO_CLIENTS;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn secret(client: &str) -> &'static str {
    DEMO_CLIENTS
        .iter()
        .find(|(id, _)| *id == client)
        .map(|(_, s)| *s)
        .unwrap()
}

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    /// `POST /int/reward` signed as `client` (unsigned when None), with an optional
    /// `Idempotency-Key`.
    async fn reward(&self, client: Option<&str>, key: Option<&str>, body: Value) -> (u16, Value) {
        let body = body.to_string();
        let mut request = self
            .http
            .post(format!("{}/int/reward", self.base))
            .header("Content-Type", "application/json")
            .body(body.clone());
        if let Some(client) = client {
            let ts = chrono::Utc::now().timestamp().to_string();
            let signature = Signed {
                timestamp: &ts,
                method: "POST",
                target: "/int/reward",
                tenant: "",
                accept_language: "",
                body: body.as_bytes(),
            }
            .sign(secret(client));
            request = request
                .header("X-ClientId", client)
                .header("X-Timestamp", ts)
                .header("X-Message", signature);
        }
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request.send().await.unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    /// `POST path` signed as the demo's admin client.
    async fn admin(&self, path: &str, body: Value) -> (u16, Value) {
        let body = body.to_string();
        let (client, secret) = questline::http::rokwire::DEMO_ADMIN;
        let ts = chrono::Utc::now().timestamp().to_string();
        let signature = Signed {
            timestamp: &ts,
            method: "POST",
            target: path,
            tenant: "",
            accept_language: "",
            body: body.as_bytes(),
        }
        .sign(secret);
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header("Content-Type", "application/json")
            .header("X-ClientId", client)
            .header("X-Timestamp", ts)
            .header("X-Message", signature)
            .body(body)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn points(&self, user: &str) -> Value {
        let balances = self.get(&format!("/user/balance?user_id={user}")).await;
        balances
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["reward_type"] == "points")
            .map(|b| b["amount"].clone())
            .unwrap()
    }

    /// Polls until `done` holds for what `path` answers (the worker evaluates asynchronously).
    async fn until(&self, path: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let body = self.get(path).await;
            if done(&body) {
                return body;
            }
            assert!(Instant::now() < deadline, "{path} never got there: {body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_grant_their_operations_once_through_the_ledger_and_users_claim() {
    let demo = Demo::start();
    let base = demo.base.clone();
    let api = Api {
        base,
        http: reqwest::Client::new(),
    };

    // The right service: 202, then a retry with the same id (body `id` and header alike).
    let grant = json!({"user_id": "r1", "code": "10_posts", "id": "g-1"});
    let (status, body) = api.reward(Some("groups"), None, grant.clone()).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        (
            &body["status"],
            &body["reward_type"],
            &body["amount"],
            &body["building_block"]
        ),
        (
            &json!("pending"),
            &json!("points"),
            &json!(10),
            &json!("groups")
        )
    );
    let (status, _) = api
        .reward(
            Some("groups"),
            Some("g-1"),
            json!({"user_id": "r1", "code": "10_posts"}),
        )
        .await;
    assert_eq!(status, 202);
    // Another service, and no service at all: refused, nothing submitted.
    let (status, body) = api.reward(Some("surveys"), None, grant.clone()).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["field"], "building_block");
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("belongs to building block 'groups'"));
    let (status, _) = api.reward(None, None, grant.clone()).await;
    assert_eq!(status, 401);
    // A second id: evaluated after the retry and the refused calls (one user, one partition,
    // in order), so once it shows, everything before it has been evaluated too.
    let (status, _) = api
        .reward(
            Some("groups"),
            Some("g-2"),
            json!({"user_id": "r1", "code": "10_posts", "description": "Posted in Chess club"}),
        )
        .await;
    assert_eq!(status, 202);
    let history = api
        .until("/user/history?user_id=r1", |h| {
            h.as_array().is_some_and(|a| a.len() >= 2)
        })
        .await;
    assert_eq!(api.points("r1").await, 20, "the retry granted again");
    let entries = history.as_array().unwrap();
    assert_eq!(entries.len(), 2, "{history}");
    assert_eq!(entries[0]["description"], "Posted in Chess club");
    assert_eq!(entries[1]["description"], "Make 10 posts in a group");
    for e in entries {
        assert_eq!(
            (&e["code"], &e["building_block"], &e["amount"], &e["org_id"]),
            (
                &json!("10_posts"),
                &json!("groups"),
                &json!(10),
                &json!("default")
            )
        );
    }

    // Field errors name the field; nothing is granted.
    let (status, body) = api
        .reward(
            Some("groups"),
            None,
            json!({"user_id": "r1", "code": "nope"}),
        )
        .await;
    assert_eq!((status, &body["field"]), (400, &json!("code")), "{body}");
    let (status, body) = api
        .reward(Some("groups"), None, json!({"code": "10_posts"}))
        .await;
    assert_eq!((status, &body["field"]), (400, &json!("user_id")), "{body}");
    let (status, body) = api
        .reward(
            Some("groups"),
            Some("k-1"),
            json!({"user_id": "r1", "code": "10_posts", "id": "k-2"}),
        )
        .await;
    assert_eq!((status, &body["field"]), (400, &json!("id")), "{body}");

    // Stock: the demo's t-shirt inventory holds 2 units, shared with the limited challenge.
    // Three users ask for one each: at most two are granted, the rest refused as depleted.
    for user in ["t1", "t2", "t3"] {
        let (status, _) = api
            .reward(
                Some("surveys"),
                Some(&format!("s-{user}")),
                json!({"user_id": user, "code": "survey_tshirt"}),
            )
            .await;
        assert_eq!(status, 202);
    }
    let mut granted = Vec::new();
    let mut depleted = 0;
    for user in ["t1", "t2", "t3"] {
        let history = api
            .until(
                &format!("/api/v1/users/{user}/history?itemsPerPage=5"),
                |h| h["count"].as_u64().is_some_and(|c| c >= 1),
            )
            .await;
        let event = &history["data"][0];
        assert_eq!(event["rewardType"], "tshirt", "{event}");
        match event["type"].as_str().unwrap() {
            "reward.granted" => {
                assert_eq!(event["reason"]["code"], "survey_tshirt");
                granted.push(user);
            }
            "reward.rejected" => {
                assert_eq!(event["reason"], "depleted", "{event}");
                assert_eq!(event["operation"]["code"], "survey_tshirt");
                assert_eq!(event["operation"]["grantId"], format!("s-{user}"));
                depleted += 1;
            }
            other => panic!("{other}: {event}"),
        }
    }
    assert!(
        granted.len() <= 2 && depleted >= 1,
        "{granted:?} {depleted}"
    );

    // Grants fail until an inventory becomes available: the admin API adds one (a catalog
    // version in force a second later in the demo), and the next grant succeeds.
    let (status, inventory) = api
        .admin(
            "/admin/inventories",
            json!({"id": "tshirts-more", "reward_type": "tshirt", "amount_total": 3}),
        )
        .await;
    assert_eq!(status, 201, "{inventory}");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (status, _) = api
        .reward(
            Some("surveys"),
            Some("s-t4"),
            json!({"user_id": "t4", "code": "survey_tshirt"}),
        )
        .await;
    assert_eq!(status, 202);
    let history = api
        .until("/api/v1/users/t4/history?itemsPerPage=5", |h| {
            h["count"].as_u64().is_some_and(|c| c >= 1)
        })
        .await;
    let event = &history["data"][0];
    assert_eq!(
        (event["type"].as_str(), event["rewardType"].as_str()),
        (Some("reward.granted"), Some("tshirt")),
        "{event}"
    );
    assert!(event["catalogVersion"].as_u64() >= Some(2), "{event}");

    // Claims: 5 points, listed with its items once evaluated; the same id again is answered
    // with the outcome and claims nothing more.
    let claim = |user: &str, body: Value| {
        api.http
            .post(format!("{}/user/claims?user_id={user}", api.base))
            .json(&body)
            .send()
    };
    let response = claim(
        "r1",
        json!({"id": "c-1", "items": [{"reward_type": "points", "amount": 5}]}),
    )
    .await
    .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let claims = api
        .until("/user/claims?user_id=r1", |c| {
            c.as_array().is_some_and(|a| !a.is_empty())
        })
        .await;
    let listed = &claims[0];
    assert_eq!(
        (&listed["id"], &listed["status"], &listed["org_id"]),
        (&json!("c-1"), &json!("completed"), &json!("default"))
    );
    assert_eq!(
        listed["items"],
        json!([{"reward_type": "points", "inventory_id": null, "amount": 5}])
    );
    let again = claim(
        "r1",
        json!({"id": "c-1", "items": [{"reward_type": "points", "amount": 5}]}),
    )
    .await
    .unwrap();
    assert_eq!(again.status().as_u16(), 200);
    assert_eq!(api.points("r1").await, 15);
    // A limited reward type's claim names the inventory it was claimed from.
    if let Some(user) = granted.first() {
        claim(
            user,
            json!({"id": "c-2", "items": [{"reward_type": "tshirt", "amount": 1}]}),
        )
        .await
        .unwrap();
        let claims = api
            .until(&format!("/user/claims?user_id={user}"), |c| {
                c.as_array().is_some_and(|a| !a.is_empty())
            })
            .await;
        assert_eq!(
            claims[0]["items"][0]["inventory_id"], "tshirts-fall",
            "{claims}"
        );
    }
    // A bad line names Rokwire's field.
    let bad: Value = claim(
        "r1",
        json!({"items": [{"reward_type": "gold", "amount": 1}]}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(bad["field"], "items[0].reward_type", "{bad}");
}
