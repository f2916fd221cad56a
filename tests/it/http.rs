//! The sidecar over real HTTP: the real router on a free loopback port, an embedded store
//! filled with state the real engine computed from actions, and reqwest as the client.
//! Commands go to a recording mock sink (the full loop through the pipeline is tested by the
//! lead's end-to-end test).

use crate::support::http::*;
use questline::core::model::TriggerKey;
use questline::http::auth;
use questline::http::images::{BucketConfig, ImageUrls, Presigner};
use questline::pipeline::commands::Command;
use questline::settings::HttpSettings;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

fn progress(query: &str) -> String {
    format!("{PROGRESS}?{query}")
}

#[tokio::test]
async fn the_seed_walk_through_is_visible_in_the_progress_query() {
    let server = Server::start().await;
    for (user, left, percent) in [("nobody", 1000, 0), ("u200", 800, 20), ("u500", 500, 50)] {
        let (status, page) = server.get(&progress(&format!("UserId={user}"))).await;
        assert_eq!(status, 200, "{page}");
        let trigger = &challenge(&page, 1)["groupProgress"][0]["triggersProgress"][0];
        assert_eq!(trigger["triggerId"], 1);
        assert_eq!(trigger["triggerName"], "Earned Points");
        assert_eq!(trigger["triggerType"], 2);
        assert_eq!(trigger["triggerFrequency"], 1000);
        assert_eq!(trigger["actionLeft"], left, "{user}");
        assert_eq!(trigger["progress"], percent, "{user}");
    }
    // 1000 points: the trigger is complete and the milestone waits, unclaimed, with its voucher.
    let (_, page) = server.get(&progress("UserId=151631")).await;
    let earn = challenge(&page, 1);
    let trigger = &earn["groupProgress"][0]["triggersProgress"][0];
    assert_eq!(
        (trigger["actionLeft"].clone(), trigger["progress"].clone()),
        (json!(0), json!(100))
    );
    assert_eq!(earn["peopleFinished"], 1);
    let prizes = earn["prizes"].as_array().unwrap();
    assert_eq!(prizes.len(), 1, "{earn}");
    assert_eq!(prizes[0]["userID"], "151631");
    assert_eq!(prizes[0]["milestoneId"], "1-1");
    let prize = &prizes[0]["prizes"][0];
    assert_eq!(prize["rewardType"], "voucher_burger");
    assert_eq!(prize["value"], "BURGER-0001");
    assert_eq!(prize["description"], "You have won 40% off Buffalo Burger");
    assert_eq!(prize["expirationDate"], "2026-12-25T10:00:00Z");
    server.stop().await;
}

#[tokio::test]
async fn every_field_of_the_seed_is_present() {
    let server = Server::start().await;
    let (status, page) = server.get(&progress("UserId=u200")).await;
    assert_eq!(status, 200);
    let keys = |v: &Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&page), ["count", "data", "pagesNum"]);
    let earn = challenge(&page, 1);
    assert_eq!(
        keys(&earn),
        [
            "category",
            "description",
            "enddate",
            "endsAfter",
            "groupProgress",
            "id",
            "image",
            "isLocked",
            "name",
            "peopleFinished",
            "prizes",
            "startdate",
            "visible"
        ]
    );
    assert_eq!(earn["name"], "Earn 1000 Points");
    assert_eq!(
        earn["description"],
        "Earn 1000 points to win a burger voucher"
    );
    assert_eq!(earn["category"], json!({"id": 1, "name": "Points"}));
    assert_eq!(earn["image"], "challenges/earn-1000.png");
    assert_eq!(earn["visible"], true);
    assert_eq!(earn["isLocked"], false);
    assert_eq!(earn["startdate"], Value::Null);
    assert_eq!(earn["endsAfter"], Value::Null);
    let group = &earn["groupProgress"][0];
    assert_eq!(
        keys(group),
        ["groupId", "groupOrder", "operator", "triggersProgress"]
    );
    assert_eq!(
        (group["groupId"].clone(), group["groupOrder"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(group["operator"], "AND");
    assert_eq!(
        keys(&group["triggersProgress"][0]),
        [
            "actionLeft",
            "operator",
            "progress",
            "triggerFrequency",
            "triggerId",
            "triggerName",
            "triggerOrder",
            "triggerType"
        ]
    );
    // Two groups joined by OR (challenge 4).
    let fan = challenge(&page, 4);
    assert_eq!(fan["groupProgress"][1]["operator"], "OR");
    assert_eq!(
        fan["groupProgress"][0]["triggersProgress"][1]["operator"],
        "AND"
    );
    // A windowed challenge: dates and whole days left (rounded up, 0 once ended).
    let explorer = challenge(&page, 6);
    assert_eq!(explorer["startdate"], "2026-01-01T00:00:00Z");
    assert_eq!(explorer["enddate"], "2027-01-01T00:00:00Z");
    let end: chrono::DateTime<chrono::Utc> = "2027-01-01T00:00:00Z".parse().unwrap();
    let left = (end - chrono::Utc::now()).num_seconds();
    let expected = if left <= 0 {
        0
    } else {
        (left + 86_399) / 86_400
    };
    let got = explorer["endsAfter"].as_i64().unwrap();
    assert!(
        (got - expected).abs() <= 1,
        "endsAfter {got}, expected about {expected}"
    );
    server.stop().await;
}

#[tokio::test]
async fn hidden_locked_and_claimed_limited_challenges() {
    let server = Server::start().await;
    let (_, page) = server.get(&progress("UserId=u200")).await;
    assert_eq!(ids(&page), [1, 2, 3, 4, 5, 6, 8], "challenge 7 is hidden");
    assert_eq!(
        (page["count"].clone(), page["pagesNum"].clone()),
        (json!(7), json!(1))
    );
    assert_eq!(
        challenge(&page, 3)["isLocked"],
        true,
        "parent 1 not achieved"
    );
    // The viewer achieved the hidden challenge: still not listed, nor found by name.
    let (_, page) = server.get(&progress("UserId=viewer")).await;
    assert!(!ids(&page).contains(&7));
    let (_, page) = server
        .get(&progress("UserId=viewer&SearchQuery=secret"))
        .await;
    assert_eq!(ids(&page), Vec::<u64>::new());
    // 151631 achieved challenge 1: challenge 3 is unlocked.
    let (_, page) = server.get(&progress("UserId=151631")).await;
    assert_eq!(challenge(&page, 3)["isLocked"], false);
    assert_eq!(challenge(&page, 3)["prizes"][0]["milestoneId"], "3-1");
    // kick-8 won the limited challenge 5 and has not claimed: listed, with its prize.
    let (_, page) = server.get(&progress("UserId=kick-8")).await;
    let limited = challenge(&page, 5);
    assert_eq!(limited["prizes"][0]["prizes"][0]["rewardType"], "tshirt");
    assert_eq!(limited["peopleFinished"], 2);
    // kick-7 claimed it: the limited challenge is left out, and no prize is shown anywhere.
    let (_, page) = server.get(&progress("UserId=kick-7")).await;
    assert_eq!(ids(&page), [1, 2, 3, 4, 6, 8]);
    assert_eq!(page["count"], 6);
    assert!(page["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["prizes"] == json!([])));
    server.stop().await;
}

#[tokio::test]
async fn category_filter_search_and_languages() {
    let server = Server::start().await;
    for (category, expected) in [
        (1, vec![1, 2, 3]),
        (2, vec![4, 8]),
        (3, vec![5, 6]),
        (99, vec![]),
    ] {
        let (status, page) = server
            .get(&progress(&format!("UserId=u200&CategoryId={category}")))
            .await;
        assert_eq!(status, 200);
        assert_eq!(ids(&page), expected, "category {category}");
        assert_eq!(page["count"], expected.len());
    }
    let (_, page) = server.get(&progress("UserId=u200&CategoryId=99")).await;
    assert_eq!(page["pagesNum"], 0);
    let (_, page) = server.get(&progress("UserId=u200&SearchQuery=EARN")).await;
    assert_eq!(ids(&page), [1]);
    let (_, page) = server
        .get(&progress("UserId=u200&SearchQuery=tier&CategoryId=1"))
        .await;
    assert_eq!(ids(&page), [3]);
    // In Arabic: names, descriptions, categories and trigger names translated; search in Arabic.
    let arabic = [("Accept-Language", "ar")];
    let query = progress("UserId=u200&SearchQuery=%D8%A7%D9%83%D8%B3%D8%A8"); // اكسب
    let (status, page) = server.get_with(&query, &arabic).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(ids(&page), [1]);
    let earn = challenge(&page, 1);
    assert_eq!(earn["name"], "اكسب 1000 نقطة");
    assert_eq!(earn["description"], "اكسب 1000 نقطة لتربح قسيمة برجر");
    assert_eq!(earn["category"]["name"], "النقاط");
    assert_eq!(
        earn["groupProgress"][0]["triggersProgress"][0]["triggerName"],
        "النقاط المكتسبة"
    );
    // The search is on the name the client sees: English words do not match Arabic names.
    let (_, page) = server
        .get_with(&progress("UserId=u200&SearchQuery=earn"), &arabic)
        .await;
    assert_eq!(ids(&page), Vec::<u64>::new());
    // q-values: French is not in the catalog, Arabic (0.8) beats English (0.5).
    let (_, page) = server
        .get_with(
            &progress("UserId=u200&CategoryId=1"),
            &[("Accept-Language", "fr;q=0.9, en;q=0.5, ar-EG;q=0.8")],
        )
        .await;
    assert_eq!(challenge(&page, 1)["name"], "اكسب 1000 نقطة");
    // Untranslated text stays as it is; prizes are described in the language asked.
    let (_, page) = server.get_with(&progress("UserId=151631"), &arabic).await;
    assert_eq!(challenge(&page, 5)["name"], "First to five comments");
    assert_eq!(
        challenge(&page, 1)["prizes"][0]["prizes"][0]["description"],
        "لقد ربحت خصم 40% على بافلو برجر"
    );
    server.stop().await;
}

#[tokio::test]
async fn ordering_both_ways_by_any_field() {
    let server = Server::start().await;
    let order =
        |by: &str, asc: bool| progress(&format!("UserId=151631&OrderBy={by}&IsAscending={asc}"));
    let (_, page) = server.get(&progress("UserId=151631")).await;
    assert_eq!(ids(&page), [1, 2, 3, 4, 5, 6, 8], "default: id ascending");
    let (_, page) = server.get(&order("Id", false)).await;
    assert_eq!(ids(&page), [8, 6, 5, 4, 3, 2, 1]);
    let (_, page) = server.get(&order("name", true)).await;
    let names: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort_by_key(|n| n.to_lowercase());
    assert_eq!(names, sorted);
    let (_, desc) = server.get(&order("NAME", false)).await;
    let mut reversed = ids(&page);
    reversed.reverse();
    assert_eq!(ids(&desc), reversed);
    // People finished: 5 has two, 1 and 3 one each (ties by id), the rest none.
    let (_, page) = server.get(&order("peopleFinished", false)).await;
    assert_eq!(ids(&page), [5, 1, 3, 2, 4, 6, 8]);
    let (_, page) = server.get(&order("endsAfter", true)).await;
    assert_eq!(
        ids(&page)[0],
        6,
        "the only challenge with an end comes first"
    );
    let (_, page) = server.get(&order("category", false)).await;
    assert_eq!(ids(&page), [5, 6, 4, 8, 1, 2, 3]);
    let (_, page) = server.get(&order("isLocked", true)).await;
    assert_eq!(ids(&page).len(), 7);
    let (status, body) = server.get(&order("popularity", true)).await;
    assert_error(status, &body, 400, Some("OrderBy"));
    assert!(
        body["message"].as_str().unwrap().contains("peopleFinished"),
        "{body}"
    );
    let (status, body) = server.get(&progress("UserId=1&IsAscending=maybe")).await;
    assert_error(status, &body, 400, Some("IsAscending"));
    server.stop().await;
}

#[tokio::test]
async fn paging_and_its_edges() {
    let server = Server::start().await;
    let mut seen = Vec::new();
    for page_no in 1..=3 {
        let (_, page) = server
            .get(&progress(&format!(
                "UserId=u200&Page={page_no}&ItemsPerPage=3"
            )))
            .await;
        assert_eq!(
            (page["count"].clone(), page["pagesNum"].clone()),
            (json!(7), json!(3))
        );
        seen.extend(ids(&page));
    }
    assert_eq!(seen, [1, 2, 3, 4, 5, 6, 8]);
    // Past the end: empty data, the right count and number of pages.
    let (status, page) = server
        .get(&progress("UserId=u200&Page=4&ItemsPerPage=3"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(page, json!({"data": [], "pagesNum": 3, "count": 7}));
    let (status, page) = server.get(&progress("UserId=u200&Page=4294967295")).await;
    assert_eq!((status, page["count"].clone()), (200, json!(7)));
    // 0 and 1000 items per page, page 0, junk: 400 naming the field.
    for (query, field) in [
        ("UserId=u200&ItemsPerPage=0", "ItemsPerPage"),
        ("UserId=u200&ItemsPerPage=1000", "ItemsPerPage"),
        ("UserId=u200&Page=0", "Page"),
        ("UserId=u200&Page=-2", "Page"),
        ("UserId=u200&CategoryId=abc", "CategoryId"),
        ("CategoryId=1", "UserId"),
        ("UserId=", "UserId"),
    ] {
        let (status, body) = server.get(&progress(query)).await;
        assert_error(status, &body, 400, Some(field));
    }
    let (_, body) = server.get(&progress("UserId=u200&ItemsPerPage=1000")).await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("between 1 and 100"),
        "{body}"
    );
    // Parameter names are matched case-insensitively, as the seed's stack does.
    let (status, page) = server
        .get(&progress("userid=u200&itemsperpage=2&page=2"))
        .await;
    assert_eq!((status, ids(&page)), (200, vec![3, 4]));
    let (status, page) = server.get(&progress("UserId=u200&ItemsPerPage=100")).await;
    assert_eq!((status, page["pagesNum"].clone()), (200, json!(1)));
    server.stop().await;
}

#[tokio::test]
async fn add_action_answers_the_seeds_body_after_submitting() {
    let server = Server::start().await;
    let (status, body) = server
        .post(
            ADD_ACTION,
            r#"{"userId": "12365984", "triggerId": 1, "value": 100}"#,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"message": "Process completed successfully", "statusCode": 1, "statusName": "Successfully"})
    );
    // The seed's table spells fields in PascalCase; values may be strings; names resolve.
    let (status, _) = server
        .post(
            ADD_ACTION,
            r#"{"UserId": "151631", "TriggerId": "1", "Value": "99.50", "ActionType": 1, "actionId": "a-1"}"#,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = server
        .post(
            ADD_ACTION,
            r#"{"userId": "kick-9", "triggerId": "post_comment", "location": "forum"}"#,
        )
        .await;
    assert_eq!(status, 200);
    let commands = server.sink.commands();
    assert_eq!(commands.len(), 3);
    let Command::AddAction(first) = &commands[0] else {
        panic!("{commands:?}")
    };
    assert_eq!(first.user_id, "12365984");
    assert_eq!(first.trigger_id, TriggerKey::Id(1));
    assert_eq!(first.value, 100.into());
    assert_eq!(first.tenant, "default");
    let Command::AddAction(second) = &commands[1] else {
        panic!("{commands:?}")
    };
    assert_eq!(second.user_id, "151631");
    assert_eq!(second.value.to_string(), "99.50");
    assert_eq!(second.action_id.as_deref(), Some("a-1"));
    let Command::AddAction(third) = &commands[2] else {
        panic!("{commands:?}")
    };
    assert_eq!(third.value, 1.into(), "value defaults to 1");
    assert_eq!(third.location.as_deref(), Some("forum"));
    server.stop().await;
}

#[tokio::test]
async fn add_action_rejects_each_bad_field_by_name() {
    let server = Server::start().await;
    for (body, field) in [
        (r#"{"triggerId": 1, "value": 1}"#, "userId"),
        (r#"{"userId": "  ", "triggerId": 1}"#, "userId"),
        (r#"{"userId": ["x"], "triggerId": 1}"#, "userId"),
        (r#"{"userId": "u", "value": 1}"#, "triggerId"),
        (r#"{"userId": "u", "triggerId": 99}"#, "triggerId"),
        (r#"{"userId": "u", "triggerId": true}"#, "triggerId"),
        (
            r#"{"userId": "u", "triggerId": "no_such_event"}"#,
            "triggerId",
        ),
        (
            r#"{"userId": "u", "triggerId": 1, "value": "lots"}"#,
            "value",
        ),
        (r#"{"userId": "u", "triggerId": 1, "value": {}}"#, "value"),
        // Past the documented bound of a value: 10^15 in magnitude, 8 decimal places.
        (
            r#"{"userId": "u", "triggerId": 1, "value": "79228162514264337593543950335"}"#,
            "value",
        ),
        (
            r#"{"userId": "u", "triggerId": 1, "value": -1000000000000001}"#,
            "value",
        ),
        (
            r#"{"userId": "u", "triggerId": 1, "value": "0.000000001"}"#,
            "value",
        ),
        (
            r#"{"userId": "u", "triggerId": 1, "occurredAt": "yesterday"}"#,
            "occurredAt",
        ),
        (r#"{"userId": "u", "triggerId": 1, "params": 3}"#, "params"),
        (
            r#"{"userId": "u", "triggerId": 1, "tenant": "acme"}"#,
            "tenant",
        ),
        ("this is not JSON", "body"),
        ("[1, 2]", "body"),
        ("", "body"),
    ] {
        let (status, response) = server.post(ADD_ACTION, body).await;
        assert_error(status, &response, 400, Some(field));
    }
    let long_user = format!(r#"{{"userId": "{}", "triggerId": 1}}"#, "9".repeat(300));
    let (status, response) = server.post(ADD_ACTION, long_user).await;
    assert_error(status, &response, 400, Some("userId"));
    assert!(
        server.sink.commands().is_empty(),
        "nothing invalid was submitted"
    );
    server.stop().await;
}

#[tokio::test]
async fn oversized_bodies_get_413_and_an_unavailable_log_503() {
    let server = Server::start().await;
    let limit = HttpSettings::default().max_body_bytes;
    let padding = "x".repeat(limit + 1);
    let big = format!(r#"{{"userId": "u", "triggerId": 1, "params": {{"p": "{padding}"}}}}"#);
    let (status, body) = server.post(ADD_ACTION, big.clone()).await;
    assert_error(status, &body, 413, None);
    assert_eq!(body["statusName"], "PayloadTooLarge");
    let (status, body) = server.post("/api/v1/users/u/claims", big).await;
    assert_error(status, &body, 413, None);
    server.sink.fail(true);
    let response = server
        .client
        .post(server.url(ADD_ACTION))
        .body(r#"{"userId": "u", "triggerId": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["retry-after"], "1");
    let (status, body) = status_json(response).await;
    assert_error(status, &body, 503, None);
    assert!(
        body["message"].as_str().unwrap().contains("unavailable"),
        "{body}"
    );
    let (status, body) = server
        .post("/api/v1/users/u/claims", r#"{"milestoneIds": ["1-1"]}"#)
        .await;
    assert_error(status, &body, 503, None);
    assert!(server.sink.commands().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn balances_of_every_reward_type() {
    let server = Server::start().await;
    let (status, body) = server.get("/api/v1/users/151631/balances").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["userId"], "151631");
    let data = body["data"].as_array().unwrap();
    let types: Vec<&str> = data
        .iter()
        .map(|b| b["rewardType"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "points",
            "voucher_burger",
            "badge_explorer",
            "tshirt",
            "legacy_coins"
        ]
    );
    let balance = |t: &str| data.iter().find(|b| b["rewardType"] == t).unwrap().clone();
    assert_eq!(balance("points")["balance"], 500);
    assert_eq!(balance("points")["displayName"], "Points");
    assert_eq!(balance("points")["kind"], "points");
    assert_eq!(balance("voucher_burger")["balance"], 1);
    assert_eq!(balance("tshirt")["balance"], 0);
    assert_eq!(balance("legacy_coins")["active"], false);
    let (_, body) = server
        .get_with(
            "/api/v1/users/151631/balances",
            &[("Accept-Language", "ar")],
        )
        .await;
    assert_eq!(body["data"][0]["displayName"], "نقاط");
    let (status, body) = server.get("/api/v1/users/stranger/balances").await;
    assert_eq!(status, 200);
    assert!(body["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|b| b["balance"] == 0));
    let (status, body) = server
        .get_with("/api/v1/users/151631/balances", &[("X-Tenant", "acme")])
        .await;
    assert_error(status, &body, 400, Some("X-Tenant"));
    server.stop().await;
}

#[tokio::test]
async fn history_newest_first_in_pages() {
    let server = Server::start().await;
    let (status, all) = server
        .get("/api/v1/users/151631/history?itemsPerPage=100")
        .await;
    assert_eq!(status, 200, "{all}");
    let count = all["count"].as_u64().unwrap();
    let entries = all["data"].as_array().unwrap();
    assert_eq!(entries.len() as u64, count);
    assert!(count >= 4, "two milestones and their grants: {all}");
    let seqs: Vec<u64> = entries.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    let expected: Vec<u64> = (0..count).rev().collect();
    assert_eq!(seqs, expected, "newest first");
    assert_eq!(entries.last().unwrap()["type"], "milestone.achieved");
    assert!(entries
        .iter()
        .all(|e| e["eventId"].is_string() && e["userId"] == "151631"));
    let (_, page) = server
        .get("/api/v1/users/151631/history?page=2&itemsPerPage=2")
        .await;
    let seqs: Vec<u64> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [count - 3, count - 4]);
    assert_eq!(page["pagesNum"], count.div_ceil(2));
    let (status, page) = server.get("/api/v1/users/151631/history?page=99").await;
    assert_eq!(status, 200);
    assert_eq!(page["data"], json!([]));
    assert_eq!(page["count"], count);
    let (_, page) = server.get("/api/v1/users/nobody/history").await;
    assert_eq!(page, json!({"data": [], "pagesNum": 0, "count": 0}));
    for (query, field) in [
        ("itemsPerPage=0", "itemsPerPage"),
        ("itemsPerPage=1000", "itemsPerPage"),
        ("page=0", "page"),
    ] {
        let (status, body) = server
            .get(&format!("/api/v1/users/151631/history?{query}"))
            .await;
        assert_error(status, &body, 400, Some(field));
    }
    server.stop().await;
}

#[tokio::test]
async fn claims_are_accepted_then_their_status_is_read() {
    let server = Server::start().await;
    let response = server
        .client
        .post(server.url("/api/v1/users/151631/claims"))
        .body(r#"{"milestoneIds": ["1-1"], "items": [{"rewardType": "points", "amount": 100}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let (_, body) = status_json(response).await;
    let claim_id = body["claimId"].as_str().unwrap().to_string();
    assert_eq!(
        uuid::Uuid::parse_str(&claim_id).unwrap().get_version_num(),
        4
    );
    assert_eq!(body["status"], "pending");
    assert_eq!(location, format!("/api/v1/users/151631/claims/{claim_id}"));
    let commands = server.sink.commands();
    let Command::Claim(claim) = &commands[0] else {
        panic!("{commands:?}")
    };
    assert_eq!(claim.claim_id, claim_id);
    assert_eq!(claim.user_id, "151631");
    assert_eq!(claim.milestone_ids, ["1-1"]);
    assert_eq!(claim.items[0].reward_type, "points");
    assert_eq!(claim.items[0].amount, 100.into());
    // Not evaluated yet (the mock sink never delivers): 404 that says so.
    let (status, body) = server.get(&location).await;
    assert_error(status, &body, 404, None);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("may not be processed yet"),
        "{body}"
    );
    // A client-chosen id is kept (retries are then harmless).
    let (status, body) = server
        .post(
            "/api/v1/users/151631/claims",
            r#"{"claimId": "retry-me", "milestoneIds": ["3-1"]}"#,
        )
        .await;
    assert_eq!((status, body["claimId"].clone()), (202, json!("retry-me")));
    // Outcomes the worker stored: completed with items, failed with a reason.
    let (status, body) = server.get("/api/v1/users/kick-7/claims/claim-kick-7").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "completed");
    assert_eq!(body["claimId"], "claim-kick-7");
    assert_eq!(body["items"][0]["rewardType"], "tshirt");
    assert_eq!(body["items"][0]["milestoneId"], "5-1");
    assert_eq!(body["items"][0]["amount"], 1);
    let (status, body) = server.get("/api/v1/users/poor/claims/claim-poor").await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "failed");
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .contains("insufficient balance"),
        "{body}"
    );
    // Someone else's claim id is not visible under another user.
    let (status, _) = server.get("/api/v1/users/poor/claims/claim-kick-7").await;
    assert_eq!(status, 404);
    let (status, body) = server.get("/api/v1/users/poor/claims/bad%20id").await;
    assert_error(status, &body, 400, Some("claimId"));
    for (body, field) in [
        ("{}", "milestoneIds"),
        (r#"{"milestoneIds": [1]}"#, "milestoneIds[0]"),
        (
            r#"{"items": [{"rewardType": "gold", "amount": 1}]}"#,
            "items[0].rewardType",
        ),
        (
            r#"{"items": [{"rewardType": "points", "amount": -5}]}"#,
            "items[0].amount",
        ),
        (
            r#"{"items": [{"rewardType": "points", "amount": "many"}]}"#,
            "items[0].amount",
        ),
        ("nope", "body"),
    ] {
        let (status, response) = server.post("/api/v1/users/151631/claims", body).await;
        assert_error(status, &response, 400, Some(field));
    }
    assert_eq!(server.sink.commands().len(), 2);
    server.stop().await;
}

#[tokio::test]
async fn health_readiness_metrics_and_unknown_routes() {
    let server = Server::start().await;
    let (status, body) = server.get("/healthz").await;
    assert_eq!((status, body), (200, json!({"status": "ok"})));
    let (status, body) = server.get("/readyz").await;
    assert_eq!((status, body), (200, json!({"status": "ready"})));
    server.ready.set_not_ready("replaying the commands topic");
    let (status, body) = server.get("/readyz").await;
    assert_error(status, &body, 503, None);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("replaying the commands topic"),
        "{body}"
    );
    server.ready.set_ready();
    let (status, _) = server.get(&progress("UserId=u200")).await;
    assert_eq!(status, 200);
    let response = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = response.text().await.unwrap();
    assert!(
        text.contains(r#"questline_http_requests_total{route="/api/v1/Challenges/GetProgressChallengesInfoForUser",status="200"}"#),
        "{text}"
    );
    assert!(
        text.contains("questline_http_request_seconds_bucket"),
        "{text}"
    );
    // Which release runs, and the process's own resources, for every dashboard.
    assert!(
        text.contains(&format!(
            "questline_build_info{{version=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
    let resident = text
        .lines()
        .find_map(|l| l.strip_prefix("questline_process_resident_memory_bytes "))
        .and_then(|v| v.parse::<f64>().ok());
    assert!(
        resident.is_some_and(|bytes| bytes > 0.0),
        "no resident memory in {text}"
    );
    for gauge in [
        "questline_broker_up",
        "questline_partitions_assigned",
        "questline_partitions_paused",
    ] {
        assert!(text.contains(&format!("\n{gauge} ")), "{gauge} in {text}");
    }
    let (status, body) = server.get("/no/such/thing").await;
    assert_error(status, &body, 404, None);
    let (status, body) = server.post("/healthz", "{}").await;
    assert_error(status, &body, 405, None);
    assert_eq!(body["statusName"], "MethodNotAllowed");
    let response = server
        .client
        .delete(server.url(ADD_ACTION))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 405);
    server.stop().await;
}

#[tokio::test]
async fn the_openapi_document_covers_every_route() {
    let server = Server::start().await;
    let (status, doc) = server.get("/openapi.json").await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    let routes = [
        ("get", "/api/v1/Challenges/GetProgressChallengesInfoForUser"),
        ("post", "/api/v1/Integration/AddAction"),
        ("get", "/api/v1/users/{userId}/balances"),
        ("get", "/api/v1/users/{userId}/history"),
        ("post", "/api/v1/users/{userId}/claims"),
        ("get", "/api/v1/users/{userId}/claims/{claimId}"),
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/metrics"),
        ("get", "/openapi.json"),
        ("post", "/userauth/user/tenant/login"),
        ("get", "/userauth/user/tenant/balance"),
        ("get", "/user/tenant/balance"),
        ("post", "/core/user/tenant/event/occurence"),
        ("get", "/core/user/tenant/transactions"),
        ("get", "/core/user/tenant/offers"),
        ("post", "/core/user/tenant/offers/redeem"),
        ("get", "/core/user/tenant/offers/redemptions/{redemptionId}"),
        ("get", "/rest/user/action/add/{as}"),
        ("post", "/rest/user/action/add/{as}"),
        ("post", "/rest/user/disable/{as}"),
        ("post", "/rest/user/enable/{as}"),
        ("get", "/admin/types"),
        ("post", "/admin/types"),
        ("get", "/admin/types/{id}"),
        ("put", "/admin/types/{id}"),
        ("get", "/admin/inventories"),
        ("post", "/admin/inventories"),
        ("get", "/admin/inventories/{id}"),
        ("put", "/admin/inventories/{id}"),
        ("get", "/admin/operations"),
        ("post", "/admin/operations"),
        ("get", "/admin/operations/{id}"),
        ("put", "/admin/operations/{id}"),
        ("post", "/int/reward"),
        ("get", "/user/balance"),
        ("get", "/user/history"),
        ("get", "/user/claims"),
        ("post", "/user/claims"),
    ];
    let paths: BTreeSet<&String> = doc["paths"].as_object().unwrap().keys().collect();
    let distinct: BTreeSet<&str> = routes.iter().map(|(_, path)| *path).collect();
    assert_eq!(paths.len(), distinct.len(), "{paths:?}");
    for (method, path) in routes {
        let operation = &doc["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is not documented");
        assert!(
            ["200", "201", "202"]
                .iter()
                .any(|code| operation["responses"][code].is_object()),
            "{method} {path}"
        );
    }
    // Every route the document names answers (not 404/405) on the real server.
    for (method, path) in routes {
        let concrete = path
            .replace("{userId}", "u200")
            .replace("{claimId}", "c-1")
            .replace("{redemptionId}", "r-1")
            .replace("{as}", "8001")
            .replace("{id}", "x");
        let request = match method {
            "get" => server.client.get(server.url(&concrete)),
            "put" => server.client.put(server.url(&concrete)).body("{}"),
            _ => server.client.post(server.url(&concrete)).body("{}"),
        };
        let status = request.send().await.unwrap().status().as_u16();
        assert!(
            status != 405 && (status != 404 || concrete.contains("claims/c-1")),
            "{method} {concrete}: {status}"
        );
    }
    let params: Vec<&str> = doc["paths"][PROGRESS]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for name in [
        "UserId",
        "CategoryId",
        "Page",
        "ItemsPerPage",
        "SearchQuery",
        "OrderBy",
        "IsAscending",
        "Accept-Language",
    ] {
        assert!(params.contains(&name), "{name} missing from {params:?}");
    }
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in [
        "ProgressPage",
        "ChallengeView",
        "TriggerProgressView",
        "StatusBody",
        "ClaimStatus",
        "BalancesResponse",
    ] {
        assert!(schemas.contains_key(name), "{name} missing");
    }
    let security = doc["components"]["securitySchemes"].as_object().unwrap();
    assert_eq!(security["message"]["name"], "X-Message");
    assert_eq!(security["clientId"]["name"], "X-ClientId");
    server.stop().await;
}

fn auth_settings() -> HttpSettings {
    let mut settings = HttpSettings::default();
    settings.auth.clients.insert("app".into(), "s3cret".into());
    settings.auth.max_skew_seconds = 60;
    settings
}

/// The signature of a request without `X-Tenant` or `Accept-Language`.
fn sign(secret: &str, timestamp: &str, method: &str, target: &str, body: &[u8]) -> String {
    auth::Signed {
        timestamp,
        method,
        target,
        body,
        ..auth::Signed::default()
    }
    .sign(secret)
}

/// A request signed as the auth module documents.
fn signed(
    server: &Server,
    method: reqwest::Method,
    target: &str,
    body: &str,
    secret: &str,
    timestamp: i64,
) -> reqwest::RequestBuilder {
    signed_with(server, method, target, &[], body, secret, timestamp)
}

/// A request signed as the auth module documents, with `X-Tenant` and `Accept-Language`
/// among `headers` sent and signed.
fn signed_with(
    server: &Server,
    method: reqwest::Method,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
    secret: &str,
    timestamp: i64,
) -> reqwest::RequestBuilder {
    let ts = timestamp.to_string();
    let value = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map_or("", |(_, v)| *v)
    };
    let sig = auth::Signed {
        timestamp: &ts,
        method: method.as_str(),
        target,
        tenant: value("X-Tenant"),
        accept_language: value("Accept-Language"),
        body: body.as_bytes(),
    }
    .sign(secret);
    let mut request = server
        .client
        .request(method, server.url(target))
        .header("X-ClientId", "app")
        .header("X-Timestamp", ts)
        .header("X-Message", sig);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(body.to_string())
}

#[tokio::test]
async fn authentication_when_clients_are_configured() {
    let server = Server::start_with(auth_settings(), ImageUrls::default()).await;
    let now = chrono::Utc::now().timestamp();
    let target = progress("UserId=u200&Page=1");
    let get = reqwest::Method::GET;
    // Missing headers.
    let (status, body) = server.get(&target).await;
    assert_error(status, &body, 401, None);
    assert!(
        body["message"].as_str().unwrap().contains("X-ClientId"),
        "{body}"
    );
    let (status, body) = server.get_with(&target, &[("X-ClientId", "app")]).await;
    assert_error(status, &body, 401, None);
    // Stale, and from the future.
    for skew in [-120, 120] {
        let response = signed(&server, get.clone(), &target, "", "s3cret", now + skew)
            .send()
            .await
            .unwrap();
        let (status, body) = status_json(response).await;
        assert_error(status, &body, 401, None);
        assert!(
            body["message"].as_str().unwrap().contains("X-Timestamp"),
            "{body}"
        );
    }
    // Wrong secret, unknown client, signature of another query.
    let response = signed(&server, get.clone(), &target, "", "guess", now)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let ts = now.to_string();
    let other = sign("s3cret", &ts, "GET", &progress("UserId=someone-else"), b"");
    let response = server
        .client
        .get(server.url(&target))
        .header("X-ClientId", "app")
        .header("X-Timestamp", &ts)
        .header("X-Message", other)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let good = sign("s3cret", &ts, "GET", &target, b"");
    let response = server
        .client
        .get(server.url(&target))
        .header("X-ClientId", "intruder")
        .header("X-Timestamp", &ts)
        .header("X-Message", &good)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    // Right: hex, or base64 of the same bytes.
    let response = signed(&server, get.clone(), &target, "", "s3cret", now)
        .send()
        .await
        .unwrap();
    let (status, page) = status_json(response).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["count"], 7);
    use base64::Engine as _;
    let bytes: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&good[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let response = server
        .client
        .get(server.url(&target))
        .header("X-ClientId", "app")
        .header("X-Timestamp", &ts)
        .header(
            "X-Message",
            base64::engine::general_purpose::STANDARD.encode(bytes),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    // The body is signed too: a POST with a tampered body fails, the signed one passes.
    let body = r#"{"userId": "u200", "triggerId": 1, "value": 5}"#;
    let post = reqwest::Method::POST;
    let response = signed(&server, post.clone(), ADD_ACTION, body, "s3cret", now)
        .send()
        .await
        .unwrap();
    let (status, answer) = status_json(response).await;
    assert_eq!(
        (status, answer["statusCode"].clone()),
        (200, json!(1)),
        "{answer}"
    );
    let sig = sign("s3cret", &ts, "POST", ADD_ACTION, body.as_bytes());
    let response = server
        .client
        .post(server.url(ADD_ACTION))
        .header("X-ClientId", "app")
        .header("X-Timestamp", &ts)
        .header("X-Message", sig)
        .body(body.replace("5", "5000"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    assert_eq!(server.sink.commands().len(), 1);
    // Probes, metrics and the document stay open.
    for open in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        let status = server
            .client
            .get(server.url(open))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status.as_u16(), 200, "{open}");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_signature_covers_the_tenant_and_the_language() {
    let server = Server::start_with(auth_settings(), ImageUrls::default()).await;
    let now = chrono::Utc::now().timestamp();
    let ts = now.to_string();
    let target = "/api/v1/users/151631/balances";
    let get = reqwest::Method::GET;
    let reward_types = |body: &Value| -> Vec<String> {
        body["data"]
            .as_array()
            .unwrap_or_else(|| panic!("no data: {body}"))
            .iter()
            .map(|b| b["rewardType"].as_str().unwrap().to_string())
            .collect()
    };
    // Signed for tenant kwegg: answered with kwegg's reward types.
    let kwegg = [("X-Tenant", "kwegg")];
    let response = signed_with(&server, get.clone(), target, &kwegg, "", "s3cret", now)
        .send()
        .await
        .unwrap();
    let (status, body) = status_json(response).await;
    assert_eq!(status, 200, "{body}");
    let kwegg_types = reward_types(&body);
    // Signed for the default tenant (no X-Tenant) and replayed, headers and all, against
    // kwegg: refused, where it used to be answered with kwegg's data.
    let default_sig = sign("s3cret", &ts, "GET", target, b"");
    let replay = |tenant: Option<&str>, language: Option<&str>| {
        let mut request = server
            .client
            .get(server.url(target))
            .header("X-ClientId", "app")
            .header("X-Timestamp", &ts)
            .header("X-Message", &default_sig);
        if let Some(tenant) = tenant {
            request = request.header("X-Tenant", tenant);
        }
        if let Some(language) = language {
            request = request.header("Accept-Language", language);
        }
        request.send()
    };
    let (status, body) = status_json(replay(None, None).await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert_ne!(reward_types(&body), kwegg_types, "the tenants differ");
    let (status, body) = status_json(replay(Some("kwegg"), None).await.unwrap()).await;
    assert_error(status, &body, 401, None);
    // The same for the language: a signature without Accept-Language does not carry one.
    let (status, body) = status_json(replay(None, Some("ar")).await.unwrap()).await;
    assert_error(status, &body, 401, None);
    // And the other way round: kwegg's signature does not serve the default tenant.
    let kwegg_sig = auth::Signed {
        timestamp: &ts,
        method: "GET",
        target,
        tenant: "kwegg",
        ..auth::Signed::default()
    }
    .sign("s3cret");
    let response = server
        .client
        .get(server.url(target))
        .header("X-ClientId", "app")
        .header("X-Timestamp", &ts)
        .header("X-Message", kwegg_sig)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    // Signed with both headers: answered in Arabic.
    let both = [("X-Tenant", "default"), ("Accept-Language", "ar")];
    let response = signed_with(&server, get, target, &both, "", "s3cret", now)
        .send()
        .await
        .unwrap();
    let (status, body) = status_json(response).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"][0]["displayName"], "نقاط");
    server.stop().await;
}

#[tokio::test]
async fn a_client_with_an_empty_secret_is_refused_at_startup() {
    let mut settings = auth_settings();
    settings.auth.clients.insert("blank".into(), String::new());
    let err = questline::http::check_settings(&settings).unwrap_err();
    assert!(err.contains("http.auth.clients.blank"), "{err}");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let state = questline::http::AppState::new(
        example_catalog(),
        std::sync::Arc::new(DownStore),
        std::sync::Arc::new(RecordingSink::default()),
        settings.clone(),
    );
    let err = questline::http::serve(listener, state, async {})
        .await
        .unwrap_err();
    assert!(err.to_string().contains("http.auth.clients.blank"), "{err}");
    // A router served without the check still never accepts the empty secret: the client
    // is left out and authentication stays on.
    let state = questline::http::AppState::new(
        example_catalog(),
        std::sync::Arc::new(DownStore),
        std::sync::Arc::new(RecordingSink::default()),
        settings.clone(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let limits = questline::http::server::Limits::new(&settings).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(questline::http::server::serve(
        listener,
        questline::http::router(state),
        limits,
        async move {
            let _ = stopped.await;
        },
    ));
    let target = "/api/v1/users/151631/balances";
    let ts = chrono::Utc::now().timestamp().to_string();
    let response = reqwest::Client::new()
        .get(format!("{base}{target}"))
        .header("X-ClientId", "blank")
        .header("X-Timestamp", &ts)
        .header("X-Message", sign("", &ts, "GET", target, b""))
        .send()
        .await
        .unwrap();
    let (status, body) = status_json(response).await;
    assert_error(status, &body, 401, None);
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn images_can_be_presigned() {
    let presigner = Presigner::new(&BucketConfig {
        endpoint: "http://127.0.0.1:9000".into(),
        bucket: "images".into(),
        region: "us-east-1".into(),
        path_style: true,
        access_key: "AKIDEXAMPLE".into(),
        secret_key: "secret".into(),
        expires: Duration::from_secs(600),
    })
    .unwrap();
    let server = Server::start_with(
        HttpSettings::default(),
        ImageUrls::Presigned(Box::new(presigner)),
    )
    .await;
    let (_, page) = server.get(&progress("UserId=u200&CategoryId=1")).await;
    let image = challenge(&page, 1)["image"].as_str().unwrap().to_string();
    assert!(
        image.starts_with("http://127.0.0.1:9000/images/challenges/earn-1000.png?"),
        "{image}"
    );
    assert!(
        image.contains("X-Amz-Expires=600") && image.contains("X-Amz-Signature="),
        "{image}"
    );
    assert_eq!(
        challenge(&page, 2)["image"],
        Value::Null,
        "no image stays null"
    );
    server.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_finishes_and_frees_the_port() {
    let server = Server::start().await;
    let base = server.base.clone();
    let (status, _) = server.get("/healthz").await;
    assert_eq!(status, 200);
    tokio::time::timeout(Duration::from_secs(10), server.stop())
        .await
        .expect("the server stops when asked");
    assert!(reqwest::get(format!("{base}/healthz")).await.is_err());
}

#[tokio::test]
async fn an_unavailable_store_is_503_with_retry_after() {
    let (base, shutdown) = start_with_down_store().await;
    let client = reqwest::Client::new();
    for path in [
        progress("UserId=u200"),
        "/api/v1/users/u200/balances".to_string(),
        "/api/v1/users/u200/history".to_string(),
        "/api/v1/users/u200/claims/c-1".to_string(),
        "/readyz".to_string(),
    ] {
        let response = client.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(response.headers()["retry-after"], "1", "{path}");
        let (status, body) = status_json(response).await;
        assert_error(status, &body, 503, None);
        assert!(
            body["message"].as_str().unwrap().contains("store"),
            "{path}: {body}"
        );
    }
    // Liveness does not depend on the store; validation still answers 400 first.
    let (status, _) =
        status_json(client.get(format!("{base}/healthz")).send().await.unwrap()).await;
    assert_eq!(status, 200);
    let response = client
        .get(format!("{base}{PROGRESS}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let _ = shutdown.send(());
}

#[tokio::test]
async fn chunked_bodies_over_the_limit_get_413_too() {
    let server = Server::start().await;
    let limit = HttpSettings::default().max_body_bytes;
    // No Content-Length: the limit is enforced while reading.
    let chunk = "x".repeat(16 * 1024);
    let mut request = format!(
        "POST {ADD_ACTION} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    let mut sent = 0;
    while sent <= limit {
        request.extend(format!("{:x}\r\n{chunk}\r\n", chunk.len()).into_bytes());
        sent += chunk.len();
    }
    request.extend(b"0\r\n\r\n");
    let (status, body) = raw_request(&server.base, &request).await;
    assert_error(status, &body, 413, None);
    // A small chunked body is read and validated normally.
    let small = r#"{"userId": "u", "triggerId": 1}"#;
    let request = format!(
        "POST {ADD_ACTION} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{small}\r\n0\r\n\r\n",
        small.len()
    );
    let (status, body) = raw_request(&server.base, request.as_bytes()).await;
    assert_eq!(
        (status, body["statusCode"].clone()),
        (200, json!(1)),
        "{body}"
    );
    server.stop().await;
}
