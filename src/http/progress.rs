//! `GET /api/v1/Challenges/GetProgressChallengesInfoForUser`: the seed's progress query.
//!
//! The handler only does IO and parsing: it reads the parameters (the seed's names,
//! case-insensitively), loads the user's state and the finished counters from the store, and
//! hands everything to the pure [`crate::core::view::progress_page`], which decides filtering,
//! order, paging and every number. Image keys become URLs last (see [`super::images`]).

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::Json;
use std::sync::Arc;
use utoipa::IntoParams;

use super::error::{ApiError, StatusBody};
use super::request::{self, clip, Params};
use super::AppState;
use crate::core::view::{self, OrderBy, Paging, ProgressInput, ProgressPage, ProgressQuery};
use crate::store::UserKey;

/// The longest `SearchQuery` accepted; names are short, and this bounds the work per row.
pub const MAX_SEARCH_LEN: usize = 200;

/// The query parameters, as the seed names them (matched case-insensitively).
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query, rename_all = "PascalCase")]
#[allow(dead_code)] // documentation only: parameters are read by `Params`
pub struct ProgressParams {
    /// The user (the seed: "the phone number of the user").
    #[param(required = true)]
    user_id: String,
    /// Only challenges of this category.
    category_id: Option<u32>,
    /// 1-based page number; default 1. A page past the end returns empty `data`.
    #[param(minimum = 1)]
    page: Option<u32>,
    /// Items per page, 1–100; default 10. Other values are rejected with 400.
    #[param(minimum = 1, maximum = 100)]
    items_per_page: Option<u32>,
    /// Case-insensitive substring of the challenge name in the response's language.
    search_query: Option<String>,
    /// `id` (default), `name`, `description`, `startdate`, `enddate`, `peopleFinished`,
    /// `endsAfter`, `isLocked`, `visible` or `category`; case-insensitive.
    order_by: Option<String>,
    /// Default true.
    is_ascending: Option<bool>,
}

/// Reads and validates the parameters into the user id and a [`ProgressQuery`].
pub fn parse_query(raw: Option<&str>) -> Result<(String, ProgressQuery), ApiError> {
    let p = Params::parse(raw);
    let user_id = request::user_id("UserId", p.get("UserId"))?;
    let paging = Paging::new(
        p.u32("Page")?,
        p.u32("ItemsPerPage")?,
        ("Page", "ItemsPerPage"),
    )?;
    let search = p.get("SearchQuery").map(str::to_string);
    if search
        .as_deref()
        .is_some_and(|s| s.chars().count() > MAX_SEARCH_LEN)
    {
        return Err(ApiError::invalid(
            "SearchQuery",
            format!("SearchQuery must be at most {MAX_SEARCH_LEN} characters"),
        ));
    }
    let order_by = match p.get("OrderBy") {
        None => OrderBy::Id,
        Some(text) => OrderBy::parse(text).ok_or_else(|| {
            ApiError::invalid(
                "OrderBy",
                format!(
                    "OrderBy: cannot order by '{}'; use one of {}",
                    clip(text),
                    OrderBy::NAMES.join(", ")
                ),
            )
        })?,
    };
    let query = ProgressQuery {
        category_id: p.u32("CategoryId")?,
        paging,
        search,
        order_by,
        ascending: p.bool("IsAscending")?.unwrap_or(true),
    };
    Ok((user_id, query))
}

/// The challenges available to a user, with their progress, one page at a time.
#[utoipa::path(
    get,
    path = "/api/v1/Challenges/GetProgressChallengesInfoForUser",
    tag = "challenges",
    params(
        ProgressParams,
        ("Accept-Language" = Option<String>, Header, description = "Language of names and descriptions, with q-values (`ar, en;q=0.8`)"),
        ("X-Tenant" = Option<String>, Header, description = "The tenant's catalog; `default` when absent"),
    ),
    responses(
        (status = 200, description = "One page of challenges; `pagesNum` is the number of pages", body = ProgressPage),
        (status = 400, description = "A parameter is invalid; `field` names it", body = StatusBody),
        (status = 401, description = "Authentication is configured and the signature is missing, stale or wrong", body = StatusBody),
        (status = 503, description = "The store is unavailable", body = StatusBody),
    ),
    security((), ("clientId" = [], "timestamp" = [], "message" = []))
)]
pub async fn get_progress(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Json<ProgressPage>, ApiError> {
    let (user_id, query) = parse_query(raw.as_deref())?;
    let catalog = &*request::tenant(&app, &headers)?;
    let languages = request::languages(&headers);
    let key = UserKey::new(catalog.tenant.clone(), user_id.clone());
    let (users, finished) = tokio::try_join!(
        app.store.load_users(std::slice::from_ref(&key)),
        app.people_finished(&catalog.tenant),
    )?;
    let now = chrono::Utc::now();
    let state = request::current_state(users.into_iter().next().flatten(), catalog, now);
    let input = ProgressInput {
        catalog,
        user_id: &user_id,
        state: state.as_ref(),
        people_finished: &finished,
        now,
        languages: &languages,
    };
    let mut page = view::progress_page(&input, &query);
    for challenge in &mut page.data {
        if let Some(image) = &challenge.image {
            challenge.image = Some(app.images.resolve(image));
        }
    }
    Ok(Json(page))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seeds_parameters_with_their_defaults() {
        let (user, q) = parse_query(Some("UserId=151631")).unwrap();
        assert_eq!(user, "151631");
        assert_eq!(q, ProgressQuery::new());
        let (_, q) = parse_query(Some(
            "userid=1&CategoryId=2&Page=3&ItemsPerPage=4&SearchQuery=earn&OrderBy=EndDate&IsAscending=false",
        ))
        .unwrap();
        assert_eq!(q.category_id, Some(2));
        assert_eq!((q.paging.page(), q.paging.items_per_page()), (3, 4));
        assert_eq!(q.search.as_deref(), Some("earn"));
        assert_eq!(q.order_by, OrderBy::EndDate);
        assert!(!q.ascending);
    }

    #[test]
    fn every_bad_parameter_is_named() {
        for (query, field) in [
            ("", "UserId"),
            ("UserId=%20", "UserId"),
            ("UserId=1&Page=0", "Page"),
            ("UserId=1&Page=x", "Page"),
            ("UserId=1&ItemsPerPage=0", "ItemsPerPage"),
            ("UserId=1&ItemsPerPage=1000", "ItemsPerPage"),
            ("UserId=1&CategoryId=-1", "CategoryId"),
            ("UserId=1&OrderBy=progress", "OrderBy"),
            ("UserId=1&IsAscending=yes", "IsAscending"),
        ] {
            let err = parse_query(Some(query)).unwrap_err();
            assert_eq!(err.field.as_deref(), Some(field), "{query}: {err}");
            assert!(err.message.starts_with(field), "{query}: {err}");
        }
        let long = format!("UserId=1&SearchQuery={}", "a".repeat(MAX_SEARCH_LEN + 1));
        assert_eq!(
            parse_query(Some(&long)).unwrap_err().field.as_deref(),
            Some("SearchQuery")
        );
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Whatever the query string, the parser answers Ok or a 400 naming a parameter.
            #[test]
            fn any_query_is_accepted_or_rejected_by_name(query in ".{0,200}") {
                if let Err(e) = parse_query(Some(&query)) {
                    prop_assert_eq!(e.kind, crate::http::error::Kind::InvalidInput);
                    prop_assert!(e.field.is_some());
                }
            }

            #[test]
            fn any_parameter_values_are_accepted_or_rejected_by_name(
                values in prop::collection::vec(prop_oneof!["[0-9]{0,12}", "-?[0-9]{1,3}", ".{0,20}"], 7),
            ) {
                let names = ["UserId", "CategoryId", "Page", "ItemsPerPage", "SearchQuery", "OrderBy", "IsAscending"];
                let query: Vec<String> = names
                    .iter()
                    .zip(&values)
                    .map(|(n, v)| format!("{n}={}", v.replace('&', "%26").replace('#', "%23")))
                    .collect();
                if let Err(e) = parse_query(Some(&query.join("&"))) {
                    let field = e.field.unwrap();
                    prop_assert!(names.contains(&field.as_str()), "{}", field);
                }
            }
        }
    }
}
