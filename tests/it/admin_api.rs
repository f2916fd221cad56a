//! The Rokwire admin API against the real sidecar (reqwest, signed requests): reward types
//! and inventories are created and updated as catalog versions published to the catalog log
//! (the in-process one here; tests/kafka_catalog.rs covers the Kafka log), read back with
//! their ids, dates and the inventory stage's counts; only admin clients may call it, and a
//! refused change publishes nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use questline::core::catalog::{entity_id, CatalogHistory};
use questline::core::inventory::{reward_resource, ResourceState};
use questline::core::records::ResourceRecord;
use questline::http::auth::Signed;
use questline::http::{self, AppState};
use questline::pipeline::catalog_feed::{CatalogFeed, CatalogLog, CatalogSource, MemoryCatalogLog};
use questline::pipeline::commands::{Command, CommandSink, SubmitError};
use questline::settings::HttpSettings;
use questline::store::embedded::EmbeddedStore;
use questline::store::{BatchWrite, StateStore};
use questline::trace_context::TraceContext;
use serde_json::Value;

const CATALOG: &str = r#"
# Hand-written: the comment must survive admin edits.
[[reward_types]]
reward_type = "points"
display_name = "Points"

[[reward_types]]
reward_type = "tshirt"
kind = "item"

[[inventories]]
id = "tshirts-fall"
reward_type = "tshirt"
amount_total = 2
"#;

/// Commands are not what this test is about: a sink that accepts and forgets them.
struct Discard;

#[async_trait::async_trait]
impl CommandSink for Discard {
    async fn submit(&self, _: &Command, _: Option<&TraceContext>) -> Result<(), SubmitError> {
        Ok(())
    }
}

struct Admin {
    base: String,
    client: reqwest::Client,
    log: Arc<MemoryCatalogLog>,
    feed: Arc<CatalogFeed>,
    store: EmbeddedStore,
    _dir: tempfile::TempDir,
}

impl Admin {
    async fn start() -> Admin {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let log = Arc::new(MemoryCatalogLog::default());
        let base = CatalogHistory::from_sources(&[("rewards.toml", CATALOG)]).unwrap();
        let feed = Arc::new(CatalogFeed::new(
            base,
            Arc::clone(&log) as Arc<dyn CatalogLog>,
            Duration::ZERO,
        ));
        feed.bootstrap("test files").await.unwrap();
        let mut settings = HttpSettings::default();
        settings.auth.clients = BTreeMap::from([
            ("ops".to_string(), "ops-secret".to_string()),
            ("groups".to_string(), "groups-secret".to_string()),
        ]);
        settings.auth.admin_clients = vec!["ops".into()];
        let source = CatalogSource::Live(Arc::clone(&feed));
        let state = AppState::new(
            source.now(),
            Arc::new(store.clone()),
            Arc::new(Discard),
            settings,
        )
        .with_catalogs(source);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(http::serve(listener, state, std::future::pending()));
        Admin {
            base,
            client: reqwest::Client::new(),
            log,
            feed,
            store,
            _dir: dir,
        }
    }

    async fn call(
        &self,
        client: Option<(&str, &str)>,
        method: &str,
        target: &str,
        body: &str,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let method: reqwest::Method = method.parse().unwrap();
        let mut request = self
            .client
            .request(method.clone(), format!("{}{target}", self.base))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some((id, secret)) = client {
            let timestamp = chrono::Utc::now().timestamp().to_string();
            let signature = Signed {
                timestamp: &timestamp,
                method: method.as_str(),
                target,
                tenant: "",
                accept_language: "",
                body: body.as_bytes(),
            }
            .sign(secret);
            request = request
                .header("X-ClientId", id)
                .header("X-Timestamp", timestamp)
                .header("X-Message", signature);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        (
            status,
            headers,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn admin(
        &self,
        method: &str,
        target: &str,
        body: &str,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        self.call(Some(("ops", "ops-secret")), method, target, body)
            .await
    }

    async fn log_len(&self) -> usize {
        self.log.read_from(0).await.unwrap().len()
    }
}

#[tokio::test]
async fn only_admin_clients_may_call_and_refusals_publish_nothing() {
    let admin = Admin::start().await;
    let published = admin.log_len().await;
    let body = r#"{"reward_type": "mug"}"#;
    let (status, _, _) = admin.call(None, "POST", "/admin/types", body).await;
    assert_eq!(status, 401);
    let (status, _, error) = admin
        .call(
            Some(("groups", "groups-secret")),
            "POST",
            "/admin/types",
            body,
        )
        .await;
    assert_eq!(status, 403, "{error}");
    assert_eq!(error["statusName"], "Forbidden");
    assert!(
        error["message"].as_str().unwrap().contains("'groups'"),
        "{error}"
    );
    let (status, _, error) = admin
        .admin(
            "POST",
            "/admin/types",
            r#"{"reward_type": "mug", "colour": "red"}"#,
        )
        .await;
    assert_eq!(
        (status, error["field"].as_str()),
        (400, Some("colour")),
        "{error}"
    );
    let (status, _, error) = admin
        .admin(
            "POST",
            "/admin/types",
            r#"{"reward_type": "mug", "active": "yes"}"#,
        )
        .await;
    assert_eq!(
        (status, error["field"].as_str()),
        (400, Some("active")),
        "{error}"
    );
    let (status, _, error) = admin
        .admin("POST", "/admin/types", r#"{"reward_type": "points"}"#)
        .await;
    assert_eq!(
        (status, error["field"].as_str()),
        (409, Some("reward_type")),
        "{error}"
    );
    // A change the catalog refuses: an inventory of a reward type that does not exist.
    let (status, _, error) = admin
        .admin(
            "POST",
            "/admin/inventories",
            r#"{"reward_type": "hoodie", "amount_total": 5}"#,
        )
        .await;
    assert_eq!(status, 400, "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("hoodie"),
        "{error}"
    );
    assert_eq!(admin.log_len().await, published, "nothing was published");
}

#[tokio::test]
async fn reward_types_are_created_listed_and_updated_as_catalog_versions() {
    let admin = Admin::start().await;
    let (status, headers, created) = admin
        .admin(
            "POST",
            "/admin/types",
            r#"{"reward_type": "mug", "display_name": "Mug", "description": "A mug with the logo", "kind": "item"}"#,
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        headers["questline-catalog-version"], "2",
        "version 1 is the files"
    );
    assert!(headers.contains_key("questline-effective-from"));
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 4);
    assert_eq!(created["org_id"], "default");
    assert_eq!(created["reward_type"], "mug");
    assert_eq!(created["display_name"], "Mug");
    assert_eq!(created["active"], true);
    assert_eq!(created["date_created"], created["date_updated"]);

    let (status, _, listed) = admin.admin("GET", "/admin/types", "").await;
    assert_eq!(status, 200);
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["reward_type"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["points", "tshirt", "mug"]);
    // A type written in a file has an id derived from its name, stable across versions.
    let points_id = entity_id("default", "reward_type", "points");
    assert_eq!(listed[0]["id"], points_id.as_str());

    tokio::time::sleep(Duration::from_millis(20)).await;
    let (status, headers, updated) = admin
        .admin(
            "PUT",
            &format!("/admin/types/{points_id}"),
            r#"{"active": false}"#,
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(headers["questline-catalog-version"], "3");
    assert_eq!(updated["active"], false);
    assert_ne!(updated["date_updated"], updated["date_created"]);
    // Edited where it is written, the file's comment kept.
    let files = admin.feed.current().files("default");
    let rewards = files.iter().find(|f| f.name == "rewards.toml").unwrap();
    assert!(rewards.text.contains("# Hand-written"), "{}", rewards.text);
    assert!(rewards.text.contains("active = false"), "{}", rewards.text);
    let admin_file = files.iter().find(|f| f.name == "admin.toml").unwrap();
    assert!(
        admin_file.text.contains("reward_type = \"mug\""),
        "{}",
        admin_file.text
    );

    let (status, _, error) = admin
        .admin(
            "PUT",
            &format!("/admin/types/{points_id}"),
            r#"{"reward_type": "coins"}"#,
        )
        .await;
    assert_eq!(
        (status, error["field"].as_str()),
        (400, Some("reward_type")),
        "{error}"
    );
    let (status, _, _) = admin.admin("GET", "/admin/types/no-such-id", "").await;
    assert_eq!(status, 404);
    let (status, _, fetched) = admin.admin("GET", &format!("/admin/types/{id}"), "").await;
    assert_eq!(
        (status, fetched["reward_type"].as_str()),
        (200, Some("mug"))
    );
}

#[tokio::test]
async fn inventories_show_the_inventory_stages_counts_and_can_be_added_after_depletion() {
    let admin = Admin::start().await;
    // The inventory stage has granted both shirts of the fall batch and seen one claimed.
    let mut state = ResourceState::default();
    state.granted.insert("tshirts-fall".into(), 2);
    state.claimed.insert("tshirts-fall".into(), 1);
    let batch = BatchWrite {
        resources: vec![(
            reward_resource("default", "tshirt"),
            ResourceRecord {
                state,
                applied: Default::default(),
            },
        )],
        ..BatchWrite::default()
    };
    admin.store.write_batch(&batch).await.unwrap();
    let (status, _, fall) = admin
        .admin("GET", "/admin/inventories/tshirts-fall", "")
        .await;
    assert_eq!(status, 200, "{fall}");
    assert_eq!(
        (
            fall["amount_total"].as_u64(),
            fall["amount_granted"].as_u64(),
            fall["amount_claimed"].as_u64()
        ),
        (Some(2), Some(2), Some(1))
    );

    let (status, headers, spring) = admin
        .admin(
            "POST",
            "/admin/inventories",
            r#"{"reward_type": "tshirt", "amount_total": 50, "description": "Spring batch"}"#,
        )
        .await;
    assert_eq!(status, 201, "{spring}");
    assert_eq!(headers["questline-catalog-version"], "2");
    assert_eq!(spring["amount_granted"], 0);
    assert_eq!(spring["in_stock"], true);
    let spring_id = spring["id"].as_str().unwrap();
    // The new version has both inventories, in order: grants draw from the spring batch now
    // that the fall one is empty.
    let tenant = admin
        .feed
        .current()
        .latest()
        .tenant_shared("default")
        .unwrap();
    let ids: Vec<&str> = tenant.inventories.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, ["tshirts-fall", spring_id]);

    let (status, _, error) = admin
        .admin("POST", "/admin/inventories", r#"{"reward_type": "tshirt"}"#)
        .await;
    assert_eq!(
        (status, error["field"].as_str()),
        (400, Some("amount_total")),
        "{error}"
    );
    let (status, _, error) = admin
        .admin(
            "POST",
            "/admin/inventories",
            r#"{"id": "tshirts-fall", "reward_type": "tshirt", "amount_total": 1}"#,
        )
        .await;
    assert_eq!(
        (status, error["field"].as_str()),
        (409, Some("id")),
        "{error}"
    );

    let (status, _, updated) = admin
        .admin(
            "PUT",
            "/admin/inventories/tshirts-fall",
            r#"{"amount_total": 5, "grant_depleted": true}"#,
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(
        (
            updated["amount_total"].as_u64(),
            updated["amount_granted"].as_u64(),
            updated["grant_depleted"].as_bool()
        ),
        (Some(5), Some(2), Some(true))
    );
    let (status, _, listed) = admin.admin("GET", "/admin/inventories", "").await;
    assert_eq!((status, listed.as_array().map(Vec::len)), (200, Some(2)));
}

#[tokio::test]
async fn operations_are_created_and_updated_for_the_services_that_grant_them() {
    let admin = Admin::start().await;
    let (status, headers, created) = admin
        .admin(
            "POST",
            "/admin/operations",
            r#"{"code": "10_posts", "building_block": "groups", "reward_type": "points", "amount": 10, "description": "Make 10 posts in a group"}"#,
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(headers["questline-catalog-version"], "2");
    assert_eq!(
        (
            created["code"].as_str(),
            created["building_block"].as_str(),
            created["amount"].as_u64()
        ),
        (Some("10_posts"), Some("groups"), Some(10))
    );
    let id = created["id"].as_str().unwrap().to_string();
    let tenant = admin
        .feed
        .current()
        .latest()
        .tenant_shared("default")
        .unwrap();
    assert_eq!(tenant.operation("10_posts").map(|o| o.amount), Some(10));

    let (status, _, error) = admin
        .admin(
            "POST",
            "/admin/operations",
            r#"{"code": "10_posts", "building_block": "groups", "reward_type": "points", "amount": 1}"#,
        )
        .await;
    assert_eq!(
        (status, error["field"].as_str()),
        (409, Some("code")),
        "{error}"
    );
    let (status, _, error) = admin
        .admin(
            "POST",
            "/admin/operations",
            r#"{"code": "quiz", "building_block": "groups", "reward_type": "stickers", "amount": 1}"#,
        )
        .await;
    assert_eq!(status, 400, "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("stickers"),
        "{error}"
    );
    let (status, _, error) = admin
        .admin(
            "POST",
            "/admin/operations",
            r#"{"code": "quiz", "building_block": "groups", "reward_type": "points"}"#,
        )
        .await;
    assert_eq!(
        (status, error["field"].as_str()),
        (400, Some("amount")),
        "{error}"
    );

    let (status, headers, updated) = admin
        .admin(
            "PUT",
            &format!("/admin/operations/{id}"),
            r#"{"amount": 15}"#,
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(headers["questline-catalog-version"], "3");
    assert_eq!(updated["amount"], 15);
    let (status, _, listed) = admin.admin("GET", "/admin/operations", "").await;
    assert_eq!((status, listed.as_array().map(Vec::len)), (200, Some(1)));
    let (status, _, error) = admin
        .admin(
            "PUT",
            &format!("/admin/operations/{id}"),
            r#"{"code": "20_posts"}"#,
        )
        .await;
    assert_eq!(
        (status, error["field"].as_str()),
        (400, Some("code")),
        "{error}"
    );
}
