//! The Kwegg API facade over real HTTP, with the whole engine behind it: the sidecar built by
//! the composition root (`app::app_state`, as `serve` and `demo` build it), the production
//! worker loop on the in-process log and an embedded store, and reqwest as the client. An
//! event occurrence goes through the commands topic and the worker's earning rules before the
//! balance and the transactions show it, as in production. The last test runs `questline demo`
//! itself with the documented demo License-Key.

use crate::support::example_catalog_dir;
use crate::support::inprocess::Engine;
use chrono::{TimeDelta, Utc};
use questline::core::events::{Event, EventBody, GrantReason};
use questline::core::model::SourceRef;
use questline::http;
use questline::http::kwegg::token::{self, Claims};
use questline::http::kwegg::transactions::user_transactions;
use questline::pipeline::catalog_feed::{CatalogFeed, CatalogLog, CatalogSource, MemoryCatalogLog};
use questline::settings::{KweggSettings, PipelineSettings, Settings};
use questline::store::embedded::EmbeddedStore;
use questline::store::{
    BatchWrite, ClaimRecord, HistoryEntry, StateStore, StoreError, UserKey, UserRecord,
};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const LICENSE: &str = "TESTONE1234";
/// A second license key, of the `default` tenant.
const OTHER_LICENSE: &str = "OTHER-TENANT-KEY";
const SECRET: &str = "kwegg-test-secret-0123456789abcdef";

const LOGIN: &str = "/userauth/user/tenant/login";
const BALANCE: &str = "/userauth/user/tenant/balance";
const OCCURRENCE: &str = "/core/user/tenant/event/occurence";
const TRANSACTIONS: &str = "/core/user/tenant/transactions";
const OFFERS: &str = "/core/user/tenant/offers";
const REDEEM: &str = "/core/user/tenant/offers/redeem";

fn kwegg_settings() -> KweggSettings {
    KweggSettings {
        license_keys: BTreeMap::from([
            (LICENSE.to_string(), "kwegg".to_string()),
            (OTHER_LICENSE.to_string(), "default".to_string()),
        ]),
        secret: SECRET.into(),
        ..KweggSettings::default()
    }
}

/// The engine in one process: worker, log, store and sidecar.
struct Rig {
    base: String,
    client: reqwest::Client,
    engine: Engine,
}

impl Rig {
    /// The rig on the example catalog, which never changes.
    async fn start() -> Rig {
        let catalog = questline::files::load_catalog(&example_catalog_dir()).unwrap();
        Rig::start_with(CatalogSource::fixed(catalog)).await
    }

    /// The rig whose sidecar reads the catalog in force in `catalogs`.
    async fn start_with(catalogs: CatalogSource) -> Rig {
        let settings = Settings {
            kwegg: kwegg_settings(),
            pipeline: PipelineSettings {
                linger_ms: 0,
                ..PipelineSettings::default()
            },
            ..Settings::default()
        };
        let engine = Engine::start_with_catalogs(settings, catalogs).await;
        Rig {
            base: engine.base(),
            client: reqwest::Client::new(),
            engine,
        }
    }

    fn commands(&self) -> usize {
        let e = &self.engine;
        e.log.records(&e.settings.topics.commands).len()
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")),
        )
    }

    async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        let headers = [
            ("License-Key", LICENSE),
            ("Platform", "RAW"),
            ("Authorization", token),
        ];
        self.send(reqwest::Method::GET, path, &headers, None).await
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        let headers = [
            ("License-Key", LICENSE),
            ("Platform", "RAW"),
            ("Authorization", token),
        ];
        self.send(reqwest::Method::POST, path, &headers, Some(body))
            .await
    }

    /// Logs `user` in with the seed's headers; returns the access token.
    async fn login(&self, user: &str) -> String {
        let headers = [("License-Key", LICENSE), ("Platform", "RAW")];
        let (status, body) = self
            .send(
                reqwest::Method::POST,
                LOGIN,
                &headers,
                Some(json!({"userId": user})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["data"]["accessToken"].as_str().unwrap().to_string()
    }

    async fn event(&self, token: &str, user: &str, event: Value) {
        let (status, body) = self
            .post(OCCURRENCE, token, json!({"userId": user, "event": event}))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body,
            json!({"success": true, "message": "Event triggered successfully", "data": null})
        );
    }

    /// Logs `user` in and earns them 200 coins (a 20-minute video); returns the access token.
    async fn login_with_200_coins(&self, user: &str) -> String {
        let token = self.login(user).await;
        self.event(
            &token,
            user,
            json!({"name": "WATCHED_VIDEO", "params": {"duration": 20}}),
        )
        .await;
        self.balance_becomes(&token, user, 200).await;
        token
    }

    /// Polls the balance until it is `expected` (the worker evaluates asynchronously).
    async fn balance_becomes(&self, token: &str, user: &str, expected: i64) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (status, body) = self.get(&format!("{BALANCE}?userId={user}&="), token).await;
            assert_eq!(status, 200, "{body}");
            if body["data"]["balance"] == expected {
                assert_eq!(
                    body,
                    json!({"success": true, "message": "Balance fetched successfully", "data": {"balance": expected}})
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "balance of {user} is {body}, not {expected}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(self) {
        self.engine.stop();
    }
}

/// Asserts a Kwegg error: the status, `success: false`, the field in `data` and the message.
fn assert_error(status: u16, body: &Value, expected: u16, field: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["success"], false, "{body}");
    assert_eq!(body["data"], json!({"field": field}), "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains(field),
        "message does not name {field}: {body}"
    );
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort_unstable();
    k
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_event_balance_and_transactions_in_the_seeds_shapes() {
    let rig = Rig::start().await;
    let headers = [("License-Key", LICENSE), ("Platform", "RAW")];
    let (status, login) = rig
        .send(
            reqwest::Method::POST,
            LOGIN,
            &headers,
            Some(json!({"userId": "12"})),
        )
        .await;
    assert_eq!(status, 200, "{login}");
    assert_eq!(keys(&login), ["data", "message", "success"]);
    assert_eq!(login["success"], true);
    assert_eq!(login["message"], "Login successfully");
    assert_eq!(keys(&login["data"]), ["accessToken", "user"]);
    assert_eq!(login["data"]["user"], json!({"userId": "12", "balance": 0}));
    let token = login["data"]["accessToken"].as_str().unwrap().to_string();

    // The seed's second WATCHED_VIDEO example: 20 minutes pay 200 (rule 2).
    rig.event(
        &token,
        "12",
        json!({"name": "WATCHED_VIDEO", "params": {"duration": 20}}),
    )
    .await;
    rig.balance_becomes(&token, "12", 200).await;
    // A review pays 10 every time; the same occurrence id sent twice pays once. A video of 10
    // minutes (100) follows: once the balance shows it, both reviews were evaluated before it.
    for _ in 0..2 {
        rig.event(
            &token,
            "12",
            json!({"name": "REVIEW_WRITTEN", "id": "review-1"}),
        )
        .await;
    }
    rig.event(
        &token,
        "12",
        json!({"name": "WATCHED_VIDEO", "params": {"duration": 10}}),
    )
    .await;
    rig.balance_becomes(&token, "12", 310).await;
    // Bearer works too, and the balance's userId may be left out (the token's user).
    let (status, body) = rig.get(BALANCE, &format!("Bearer {token}")).await;
    assert_eq!((status, body["data"]["balance"].clone()), (200, json!(310)));
    // The path of the seed's curl example answers alike.
    let (status, body) = rig.get("/user/tenant/balance?userId=12&=", &token).await;
    assert_eq!((status, body["data"]["balance"].clone()), (200, json!(310)));

    let (status, page) = rig
        .get(&format!("{TRANSACTIONS}?page=1&numOfItems=5"), &token)
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["message"], "Transactions fetched successfully");
    assert_eq!(keys(&page["data"]), ["totalCount", "transactions"]);
    assert_eq!(page["data"]["totalCount"], 3, "{page}");
    let list = page["data"]["transactions"].as_array().unwrap();
    for t in list {
        assert_eq!(keys(t), ["createdAt", "entry", "id", "points", "type"]);
        assert_eq!(t["entry"], "CREDIT");
        assert_eq!(t["type"], "EVENT_OCCURENCE");
        let at = t["createdAt"].as_str().unwrap();
        assert!(at.parse::<chrono::DateTime<Utc>>().is_ok(), "{at}");
        // The seed's form: microseconds and Z (2021-02-03T16:43:06.482441Z).
        assert_eq!((at.len(), &at[19..20], &at[26..]), (27, ".", "Z"), "{at}");
        assert_eq!(t["id"].as_str().unwrap().len(), 36, "a UUID: {t}");
    }
    // Newest first.
    let points: Vec<&Value> = list.iter().map(|t| &t["points"]).collect();
    assert_eq!(points, [&json!(100), &json!(10), &json!(200)]);

    // Logging in again shows the coins.
    let (_, again) = rig
        .send(
            reqwest::Method::POST,
            LOGIN,
            &headers,
            Some(json!({"userId": "12"})),
        )
        .await;
    assert_eq!(
        again["data"]["user"],
        json!({"userId": "12", "balance": 310})
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_come_in_pages_newest_first() {
    let rig = Rig::start().await;
    let token = rig.login("pager").await;
    for i in 0..7 {
        // Each review pays 10; durations make the videos pay 100 (10 min) and 50 (other).
        let event = if i % 2 == 0 {
            json!({"name": "REVIEW_WRITTEN", "id": format!("review-{i}")})
        } else {
            json!({"name": "WATCHED_VIDEO", "params": {"duration": if i == 1 { 10 } else { 3 }}})
        };
        rig.event(&token, "pager", event).await;
    }
    rig.balance_becomes(&token, "pager", 4 * 10 + 100 + 50 + 50)
        .await;
    let mut seen = Vec::new();
    for (page, expected) in [(1, 3), (2, 3), (3, 1), (4, 0)] {
        let (status, body) = rig
            .get(&format!("{TRANSACTIONS}?page={page}&numOfItems=3"), &token)
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["totalCount"], 7, "{body}");
        let list = body["data"]["transactions"].as_array().unwrap();
        assert_eq!(list.len(), expected, "page {page}: {body}");
        seen.extend(list.iter().cloned());
    }
    let points: Vec<i64> = seen.iter().map(|t| t["points"].as_i64().unwrap()).collect();
    assert_eq!(points, [10, 50, 10, 50, 10, 100, 10], "newest first");
    let mut ids: Vec<&str> = seen.iter().map(|t| t["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 7, "no transaction on two pages");
    // The defaults: page 1 of 10.
    let (_, body) = rig.get(TRANSACTIONS, &token).await;
    assert_eq!(body["data"]["transactions"].as_array().unwrap().len(), 7);
    // Out of range is a 400 naming the parameter, never clamped.
    let (status, body) = rig
        .get(&format!("{TRANSACTIONS}?numOfItems=0"), &token)
        .await;
    assert_error(status, &body, 400, "numOfItems");
    let (status, body) = rig
        .get(&format!("{TRANSACTIONS}?numOfItems=101"), &token)
        .await;
    assert_error(status, &body, 400, "numOfItems");
    let (status, body) = rig.get(&format!("{TRANSACTIONS}?page=0"), &token).await;
    assert_error(status, &body, 400, "page");
    let (status, body) = rig.get(&format!("{TRANSACTIONS}?page=first"), &token).await;
    assert_error(status, &body, 400, "page");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn license_key_platform_and_token_are_checked() {
    let rig = Rig::start().await;
    let login = |headers: Vec<(&'static str, String)>| {
        let rig = &rig;
        async move {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            rig.send(
                reqwest::Method::POST,
                LOGIN,
                &headers,
                Some(json!({"userId": "12"})),
            )
            .await
        }
    };
    let (status, body) = login(vec![("Platform", "RAW".into())]).await;
    assert_error(status, &body, 401, "License-Key");
    let (status, body) = login(vec![
        ("License-Key", "WRONG".into()),
        ("Platform", "RAW".into()),
    ])
    .await;
    assert_error(status, &body, 401, "License-Key");
    let (status, body) = login(vec![("License-Key", LICENSE.into())]).await;
    assert_error(status, &body, 400, "Platform");
    let (status, body) = login(vec![
        ("License-Key", LICENSE.into()),
        ("Platform", "PALM".into()),
    ])
    .await;
    assert_error(status, &body, 400, "Platform");
    let headers = [("License-Key", LICENSE), ("Platform", "RAW")];
    let (status, body) = rig
        .send(
            reqwest::Method::POST,
            LOGIN,
            &headers,
            Some(json!({"user": "12"})),
        )
        .await;
    assert_error(status, &body, 400, "userId");

    let token = rig.login("12").await;
    // No token.
    let (status, body) = rig
        .send(reqwest::Method::GET, BALANCE, &headers, None)
        .await;
    assert_error(status, &body, 401, "Authorization");
    // Expired: signed with the right secret, issued two days ago for an hour.
    let old = Claims::new(
        "12",
        "kwegg",
        "RAW",
        Utc::now() - TimeDelta::days(2),
        TimeDelta::hours(1),
    );
    let expired = token::issue(SECRET.as_bytes(), &old);
    let (status, body) = rig.get(BALANCE, &expired).await;
    assert_error(status, &body, 401, "Authorization");
    assert!(
        body["message"].as_str().unwrap().contains("expired"),
        "{body}"
    );
    // Tampered: the claims rewritten to another user, the signature kept.
    let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
    let forged = Claims::new("13", "kwegg", "RAW", Utc::now(), TimeDelta::hours(1));
    parts[1] = {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&forged).unwrap())
    };
    let (status, body) = rig.get(BALANCE, &parts.join(".")).await;
    assert_error(status, &body, 401, "Authorization");
    assert!(
        body["message"].as_str().unwrap().contains("signature"),
        "{body}"
    );
    // Signed with another secret.
    let foreign = token::issue(b"not the server's secret, 32 bytes!", &forged);
    let (status, body) = rig.get(BALANCE, &foreign).await;
    assert_error(status, &body, 401, "Authorization");
    // A token of the other tenant's license key, used with this one.
    let other_headers = [("License-Key", OTHER_LICENSE), ("Platform", "RAW")];
    let (_, other) = rig
        .send(
            reqwest::Method::POST,
            LOGIN,
            &other_headers,
            Some(json!({"userId": "12"})),
        )
        .await;
    let other_token = other["data"]["accessToken"].as_str().unwrap();
    let (status, body) = rig.get(BALANCE, other_token).await;
    assert_error(status, &body, 401, "Authorization");
    assert!(
        body["message"].as_str().unwrap().contains("tenant"),
        "{body}"
    );
    // Another platform than the login's.
    let web = [
        ("License-Key", LICENSE),
        ("Platform", "WEB"),
        ("Authorization", token.as_str()),
    ];
    let (status, body) = rig.send(reqwest::Method::GET, BALANCE, &web, None).await;
    assert_error(status, &body, 401, "Authorization");
    // Another user than the token's.
    let (status, body) = rig.get(&format!("{BALANCE}?userId=13"), &token).await;
    assert_error(status, &body, 403, "userId");
    let before = rig.commands();
    let (status, body) = rig
        .post(
            OCCURRENCE,
            &token,
            json!({"userId": "13", "event": {"name": "REVIEW_WRITTEN"}}),
        )
        .await;
    assert_error(status, &body, 403, "userId");
    assert_eq!(rig.commands(), before, "nothing was submitted");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_occurrences_are_refused_by_field_and_never_submitted() {
    let rig = Rig::start().await;
    let token = rig.login("12").await;
    let cases = [
        (
            json!({"event": {"name": "WATCHED_VIDEO", "params": {"duration": 10}}}),
            "userId",
        ),
        (json!({"userId": "12"}), "event"),
        (
            json!({"userId": "12", "event": {"params": {}}}),
            "event.name",
        ),
        (
            json!({"userId": "12", "event": {"name": "product_viewed"}}),
            "event.name",
        ),
        (
            json!({"userId": "12", "event": {"name": "WATCHED_VIDEO", "params": {}}}),
            "event.params.duration",
        ),
        (
            json!({"userId": "12", "event": {"name": "WATCHED_VIDEO", "params": {"duration": "ten"}}}),
            "event.params.duration",
        ),
        (
            json!({"userId": "12", "event": {"name": "VIDEO_WATCHED_BY_TYPE", "params": {"duration": 3}}}),
            "event.params.type",
        ),
    ];
    for (body, field) in cases {
        let (status, answer) = rig.post(OCCURRENCE, &token, body.clone()).await;
        assert_error(status, &answer, 400, field);
    }
    let (status, answer) = rig
        .post(
            OCCURRENCE,
            &token,
            json!({"userId": "12", "event": {"name": "WATCHED_VIDEO", "params": {}}}),
        )
        .await;
    assert_eq!(
        answer["message"],
        "event.params.duration: parameter 'duration' is mandatory and missing"
    );
    assert_eq!(status, 400);
    // Not JSON at all.
    let response = rig
        .client
        .post(format!("{}{OCCURRENCE}", rig.base))
        .header("License-Key", LICENSE)
        .header("Platform", "RAW")
        .header("Authorization", &token)
        .body("{nope")
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    assert_error(status, &body, 400, "body");
    assert_eq!(rig.commands(), 0, "nothing was submitted");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_are_listed_and_redeemed_as_claims() {
    let rig = Rig::start().await;
    let headers = [("License-Key", LICENSE), ("Platform", "RAW")];
    let (status, body) = rig
        .send(
            reqwest::Method::GET,
            &format!("{OFFERS}?page=2&numOfItems=1"),
            &headers,
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"], "Offers fetched successfully");
    assert_eq!(body["data"]["totalCount"], 2);
    let offers = body["data"]["offers"].as_array().unwrap();
    assert_eq!(offers.len(), 1);
    assert_eq!(
        offers[0],
        json!({"id": "movie-ticket", "brand": "CinemaOne", "title": "A movie ticket", "description": "Any weekday show", "points": 500})
    );
    // The other tenant has none.
    let other = [("License-Key", OTHER_LICENSE), ("Platform", "WEB")];
    let (_, body) = rig.send(reqwest::Method::GET, OFFERS, &other, None).await;
    assert_eq!(body["data"], json!({"offers": [], "totalCount": 0}));

    let token = rig.login_with_200_coins("buyer").await;
    let (status, body) = rig
        .post(
            REDEEM,
            &token,
            json!({"userId": "buyer", "offerId": "burger-40", "redemptionId": "r-1"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"success": true, "message": "Redemption accepted", "data": {"redemptionId": "r-1", "offerId": "burger-40", "status": "PENDING", "points": 100}})
    );
    let completed = redemption_outcome(&rig, &token, "r-1").await;
    assert_eq!(completed["status"], "COMPLETED", "{completed}");
    assert_eq!(completed["points"], 100);
    rig.balance_becomes(&token, "buyer", 100).await;
    // The same redemption again: its outcome, nothing claimed twice.
    let (status, body) = rig
        .post(
            REDEEM,
            &token,
            json!({"userId": "buyer", "offerId": "burger-40", "redemptionId": "r-1"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"], "Redemption already processed");
    assert_eq!(body["data"]["status"], "COMPLETED");
    // More than the coins: failed, with the reason, and the balance untouched.
    let (_, body) = rig
        .post(
            REDEEM,
            &token,
            json!({"userId": "buyer", "offerId": "movie-ticket"}),
        )
        .await;
    let minted = body["data"]["redemptionId"].as_str().unwrap().to_string();
    assert_eq!(uuid::Uuid::parse_str(&minted).unwrap().get_version_num(), 4);
    let failed = redemption_outcome(&rig, &token, &minted).await;
    assert_eq!(failed["status"], "FAILED", "{failed}");
    assert!(
        failed["reason"].as_str().unwrap().contains("insufficient"),
        "{failed}"
    );
    rig.balance_becomes(&token, "buyer", 100).await;
    // The transactions: the redemption is a DEBIT; the failed one is nothing.
    let (_, body) = rig.get(TRANSACTIONS, &token).await;
    let list = body["data"]["transactions"].as_array().unwrap();
    assert_eq!(body["data"]["totalCount"], 2, "{body}");
    assert_eq!(
        (
            list[0]["entry"].clone(),
            list[0]["type"].clone(),
            list[0]["points"].clone()
        ),
        (json!("DEBIT"), json!("REDEMPTION"), json!(100))
    );
    assert_eq!(list[1]["entry"], "CREDIT");
    // Bad redemptions, by field.
    for (body, status, field) in [
        (json!({"userId": "buyer"}), 400, "offerId"),
        (
            json!({"userId": "buyer", "offerId": "yacht"}),
            400,
            "offerId",
        ),
        (
            json!({"userId": "buyer", "offerId": "burger-40", "redemptionId": "a b"}),
            400,
            "redemptionId",
        ),
        (
            json!({"userId": "someone-else", "offerId": "burger-40"}),
            403,
            "userId",
        ),
    ] {
        let (s, answer) = rig.post(REDEEM, &token, body).await;
        assert_error(s, &answer, status, field);
    }
    let (status, body) = rig
        .get(&format!("{OFFERS}/redemptions/never"), &token)
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["success"], false);
    rig.stop().await;
}

/// Offers are the catalog's: a version published while the sidecar runs (as `questline
/// catalog push` publishes one) adds an offer that is then listed and redeemable, and one
/// that removes an offer makes redeeming it the unknown-offer error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_follow_the_catalog_versions_in_force() {
    let base = questline::files::load_catalog_history(&example_catalog_dir()).unwrap();
    let log: Arc<dyn CatalogLog> = Arc::new(MemoryCatalogLog::default());
    let feed = Arc::new(CatalogFeed::new(base, log, Duration::ZERO));
    let rig = Rig::start_with(CatalogSource::Live(Arc::clone(&feed))).await;
    let publish = |edit: &dyn Fn(&str) -> String| {
        let mut files = feed.current().files("kwegg");
        let file = files.iter_mut().find(|f| f.name == "kwegg.toml").unwrap();
        file.text = edit(&file.text);
        let feed = Arc::clone(&feed);
        async move { feed.publish("kwegg", files, "kwegg-test").await.unwrap() }
    };
    let listed = || async {
        let headers = [("License-Key", LICENSE), ("Platform", "RAW")];
        let (status, body) = rig.send(reqwest::Method::GET, OFFERS, &headers, None).await;
        assert_eq!(status, 200, "{body}");
        let ids: Vec<String> = body["data"]["offers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].as_str().unwrap().to_string())
            .collect();
        (ids, body)
    };
    assert_eq!(listed().await.0, ["burger-40", "movie-ticket"]);

    publish(&|text| {
        format!("{text}\n[[offers]]\nid = \"coffee\"\nbrand = \"Beanery\"\ntitle = \"A coffee\"\npoints = 30\n")
    })
    .await;
    let (ids, body) = listed().await;
    assert_eq!(ids, ["burger-40", "movie-ticket", "coffee"], "{body}");
    assert_eq!(
        body["data"]["offers"][2],
        json!({"id": "coffee", "brand": "Beanery", "title": "A coffee", "description": "", "points": 30})
    );
    let token = rig.login_with_200_coins("newcomer").await;
    let (status, body) = rig
        .post(
            REDEEM,
            &token,
            json!({"userId": "newcomer", "offerId": "coffee", "redemptionId": "c-1"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["points"], 30, "{body}");
    let completed = redemption_outcome(&rig, &token, "c-1").await;
    assert_eq!(completed["status"], "COMPLETED", "{completed}");
    rig.balance_becomes(&token, "newcomer", 170).await;

    // A version without the burger offer: no longer listed, and redeeming it is refused.
    publish(&|text| {
        let start = text.find("[[offers]]\nid = \"burger-40\"").unwrap();
        let end = start + text[start..].find("\n\n").unwrap() + 2;
        format!("{}{}", &text[..start], &text[end..])
    })
    .await;
    assert_eq!(listed().await.0, ["movie-ticket", "coffee"]);
    let (status, body) = rig
        .post(
            REDEEM,
            &token,
            json!({"userId": "newcomer", "offerId": "burger-40"}),
        )
        .await;
    assert_error(status, &body, 400, "offerId");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("'burger-40' is not an offer of this tenant"),
        "{body}"
    );
    rig.stop().await;
}

/// Polls a redemption until the worker evaluated it; returns its data.
async fn redemption_outcome(rig: &Rig, token: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = rig.get(&format!("{OFFERS}/redemptions/{id}"), token).await;
        if status == 200 {
            assert_eq!(body["message"], "Redemption fetched successfully");
            assert_eq!(body["data"]["redemptionId"], id);
            return body["data"].clone();
        }
        assert_eq!(status, 404, "{body}");
        assert!(Instant::now() < deadline, "redemption {id} never evaluated");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `questline demo` as the docs run it: the demo License-Key and Platform work out of the box.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_serves_the_kwegg_api_with_the_documented_license_key() {
    let process = crate::support::demo::Demo::start();
    let base = process.base.clone();
    let client = reqwest::Client::new();
    let demo = |method: reqwest::Method, path: &str| {
        client
            .request(method, format!("{base}{path}"))
            .header("License-Key", http::kwegg::DEMO_LICENSE_KEY)
            .header("Platform", "RAW")
    };
    let login: Value = demo(reqwest::Method::POST, LOGIN)
        .json(&json!({"userId": "12"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(login["success"], true, "{login}");
    let token = login["data"]["accessToken"].as_str().unwrap().to_string();
    let answer: Value = demo(reqwest::Method::POST, OCCURRENCE)
        .header("Authorization", &token)
        .json(&json!({"userId": "12", "event": {"name": "WATCHED_VIDEO", "params": {"duration": 25}}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["success"], true, "{answer}");
    let deadline = Instant::now() + Duration::from_secs(15);
    let paid = loop {
        let body: Value = demo(reqwest::Method::GET, &format!("{BALANCE}?userId=12"))
            .header("Authorization", &token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if body["data"]["balance"] == 500 || Instant::now() > deadline {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let offers: Value = demo(reqwest::Method::GET, OFFERS)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    drop(process);
    assert_eq!(paid["data"]["balance"], 500, "{paid}");
    assert_eq!(offers["data"]["totalCount"], 2, "{offers}");
}

/// The embedded store whose history grows by [`GROWTH`] entries after every page read, as a
/// user's history does while their transactions are listed.
struct GrowingStore {
    inner: EmbeddedStore,
    key: UserKey,
    len: std::sync::Mutex<u64>,
}

const GROWTH: u64 = 50;

impl GrowingStore {
    /// Appends `n` history entries (each a grant of 1 point, or of 2 for every fifth: a voucher
    /// code, not a transaction, for every seventh).
    async fn append(&self, n: u64) {
        let start = *self.len.lock().unwrap();
        let mut batch = BatchWrite::default();
        for seq in start..start + n {
            let (reward_type, amount) = if seq % 7 == 0 {
                ("voucher_burger", None)
            } else {
                ("points", Some(Decimal::from(1 + u64::from(seq % 5 == 0))))
            };
            let event = Event {
                event_id: format!("e-{seq}").into(),
                body: EventBody::RewardGranted {
                    reward_type: reward_type.into(),
                    amount,
                    code: amount.is_none().then(|| format!("CODE-{seq}")),
                    reason: GrantReason::Operation {
                        code: "op".into(),
                        building_block: "groups".into(),
                        amount: Decimal::ONE,
                        description: String::new(),
                        grant_id: format!("g-{seq}"),
                    },
                    balance: Decimal::ZERO,
                },
                tenant: self.key.tenant.as_str().into(),
                user_id: self.key.user_id.as_str().into(),
                occurred_at: Utc::now(),
                source: SourceRef::new("t", 0, seq as i64),
                catalog_version: 0,
            };
            batch
                .history
                .push((self.key.clone(), HistoryEntry::new(seq, event)));
        }
        batch.users.push((
            self.key.clone(),
            UserRecord {
                history_len: start + n,
                ..Default::default()
            },
        ));
        self.inner.write_batch(&batch).await.unwrap();
        *self.len.lock().unwrap() = start + n;
    }
}

#[async_trait::async_trait]
impl StateStore for GrowingStore {
    async fn load_users(&self, keys: &[UserKey]) -> Result<Vec<Option<UserRecord>>, StoreError> {
        self.inner.load_users(keys).await
    }
    async fn load_resources(
        &self,
        keys: &[String],
    ) -> Result<Vec<Option<questline::store::ResourceRecord>>, StoreError> {
        self.inner.load_resources(keys).await
    }
    async fn load_outbox(&self, owner: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.load_outbox(owner).await
    }
    async fn write_batch(&self, batch: &BatchWrite) -> Result<(), StoreError> {
        self.inner.write_batch(batch).await
    }
    async fn history(
        &self,
        key: &UserKey,
        page: u32,
        per_page: u32,
    ) -> Result<(Vec<HistoryEntry>, u64), StoreError> {
        let read = self.inner.history(key, page, per_page).await;
        self.append(GROWTH).await;
        read
    }
    async fn claim(
        &self,
        key: &UserKey,
        claim_id: &str,
    ) -> Result<Option<ClaimRecord>, StoreError> {
        self.inner.claim(key, claim_id).await
    }
    async fn people_finished(&self, tenant: &str) -> Result<BTreeMap<u32, u64>, StoreError> {
        self.inner.people_finished(tenant).await
    }
    async fn claim_partition(&self, group: &str, partition: &str) -> Result<i64, StoreError> {
        self.inner.claim_partition(group, partition).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}

#[tokio::test]
async fn a_long_history_growing_while_read_lists_each_transaction_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = GrowingStore {
        inner: EmbeddedStore::open(dir.path()).unwrap(),
        key: UserKey::new("kwegg", "long"),
        len: std::sync::Mutex::new(0),
    };
    store.append(1_000).await;
    let key = store.key.clone();
    // Every entry of the history as it was at the first read, newest first, once; the
    // voucher codes left out.
    let all = user_transactions(&store, &key, "points", 10_000)
        .await
        .unwrap();
    let expected: Vec<String> = (0..1_000u64)
        .rev()
        .filter(|seq| seq % 7 != 0)
        .map(|seq| format!("e-{seq}"))
        .collect();
    let ids: Vec<&str> = all.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, expected);
    assert!(all.iter().all(|t| t.kind == "OPERATION"));
    assert_eq!(all[0].points, Decimal::from(1), "e-999");
    assert_eq!(all[4].points, Decimal::from(2), "e-995");
    // The scan limit counts history entries, newest first.
    let len = *store.len.lock().unwrap();
    let newest = user_transactions(&store, &key, "points", 14).await.unwrap();
    let expected: Vec<String> = (len - 14..len)
        .rev()
        .filter(|seq| seq % 7 != 0)
        .map(|seq| format!("e-{seq}"))
        .collect();
    let ids: Vec<&str> = newest.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, expected);
}
