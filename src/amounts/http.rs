//! The HTTP caller of the amount stage: sends the exact request
//! [`programmatic::call`] builds and reads the answer with [`programmatic::read_answer`].
//!
//! - **Concurrency**: a process-wide limit (`amounts.concurrency`) on tries in flight; a
//!   batch's calls run concurrently under it, and a try waiting for a slot holds nothing else.
//! - **Timeout**: each try is bounded by the event's `timeout`, connection and answer body
//!   included. A call takes at most `(retries + 1) × timeout` plus the backoffs, and the batch
//!   that carries it waits for it: the breaker is what keeps a dead endpoint from costing that
//!   on every occurrence.
//! - **Retries**: a timeout, a failed connection, a 5xx or a 429 is tried again
//!   (`amounts.retries` times) after a jittered exponential backoff
//!   ([`breaker::backoff`]); an answer out of shape or another status is final.
//! - **Circuit breaker**: one per endpoint (its URL without the query), shared by every
//!   partition of the process ([`breaker::Breaker`]). While it is open a call is not made and
//!   the fallback is paid with reason `circuit_open`.
//! - **No redirects**: the catalog names the endpoint exactly; a 3xx is a status like another.
//!   Answers larger than [`MAX_ANSWER_BYTES`] are not of the documented shape.

use futures::future::join_all;
use rust_decimal::Decimal;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

use super::breaker::{self, Breaker};
use super::{not_programmatic, AmountCaller, Call};
use crate::core::catalog::ProgrammaticDef;
use crate::core::rules::programmatic::{self, AmountOutcome, FallbackReason, HttpCall};
use crate::metrics::metrics;
use crate::settings::AmountSettings;

/// The largest answer body read; `{"points": …}` needs a few bytes.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The HTTP client could not be built (no TLS roots could be loaded, typically).
#[derive(Debug, thiserror::Error)]
#[error("amounts: cannot build the HTTP client: {0}")]
pub struct CallerError(#[source] reqwest::Error);

/// Calls programmatic events' endpoints (see the module doc).
#[derive(Debug)]
pub struct HttpCaller {
    client: reqwest::Client,
    limit: Semaphore,
    retries: u32,
    backoff_min: Duration,
    backoff_max: Duration,
    threshold: u32,
    cool_down: Duration,
    /// By endpoint; held only between awaits, never across one.
    breakers: Mutex<HashMap<String, Breaker>>,
}

/// How one try ended.
struct Try {
    result: Result<Decimal, FallbackReason>,
    /// Whether another try may end differently.
    retry: bool,
}

impl HttpCaller {
    pub fn new(settings: &AmountSettings) -> Result<Self, CallerError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("questline/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(CallerError)?;
        Ok(HttpCaller {
            client,
            limit: Semaphore::new(settings.concurrency.max(1)),
            retries: settings.retries,
            backoff_min: Duration::from_millis(settings.backoff_min_ms),
            backoff_max: Duration::from_millis(
                settings.backoff_max_ms.max(settings.backoff_min_ms),
            ),
            threshold: settings.breaker_threshold,
            cool_down: Duration::from_millis(settings.breaker_cool_down_ms),
            breakers: Mutex::new(HashMap::new()),
        })
    }

    async fn decide_one(&self, call: Call) -> AmountOutcome {
        let Some(def) = call.def else {
            metrics()
                .amount_calls
                .with_label_values(&["not_programmatic"])
                .inc();
            return not_programmatic();
        };
        let result = self
            .call(&def, &programmatic::call(&def, &call.request))
            .await;
        let label = match &result {
            Ok(_) => "answered",
            Err(reason) => reason_label(reason),
        };
        metrics().amount_calls.with_label_values(&[label]).inc();
        if let Err(reason) = &result {
            tracing::warn!(
                request = %call.request.request_id,
                event = %call.request.event,
                endpoint = %endpoint(&def.url),
                ?reason,
                "amount endpoint failed; paying the event's fallback"
            );
        }
        programmatic::outcome(&def, result)
    }

    /// One call: admitted by the endpoint's breaker, tried and retried, reported back to it.
    async fn call(
        &self,
        def: &ProgrammaticDef,
        http: &HttpCall,
    ) -> Result<Decimal, FallbackReason> {
        let endpoint = endpoint(&def.url);
        if !self.with_breaker(&endpoint, |b| b.admit(Instant::now())) {
            return Err(FallbackReason::CircuitOpen);
        }
        let mut retry = 0;
        let result = loop {
            let tried = self.attempt(http).await;
            if tried.retry && retry < self.retries {
                let wait =
                    breaker::backoff(retry, self.backoff_min, self.backoff_max, breaker::jitter());
                metrics().amount_retries.inc();
                tokio::time::sleep(wait).await;
                retry += 1;
                continue;
            }
            break tried.result;
        };
        let failed = matches!(&result, Err(reason) if breaker::retryable(reason));
        self.with_breaker(&endpoint, |b| {
            if failed {
                b.failed(Instant::now())
            } else {
                b.succeeded(Instant::now())
            }
        });
        result
    }

    /// Runs `f` on `endpoint`'s breaker and publishes its state.
    fn with_breaker<T>(&self, endpoint: &str, f: impl FnOnce(&mut Breaker) -> T) -> T {
        let mut breakers = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        let breaker = breakers
            .entry(endpoint.to_string())
            .or_insert_with(|| Breaker::new(self.threshold, self.cool_down));
        let out = f(breaker);
        metrics()
            .amount_breaker_state
            .with_label_values(&[endpoint])
            .set(breaker.state() as i64);
        out
    }

    /// One try, under the concurrency limit.
    async fn attempt(&self, http: &HttpCall) -> Try {
        let Ok(_permit) = self.limit.acquire().await else {
            // The semaphore is never closed; if it were, no call could be made.
            return Try {
                result: Err(FallbackReason::Unreachable {
                    detail: "the caller is shut down".into(),
                }),
                retry: false,
            };
        };
        let started = Instant::now();
        let tried = self.send(http).await;
        metrics()
            .amount_call_seconds
            .observe(started.elapsed().as_secs_f64());
        tried
    }

    async fn send(&self, http: &HttpCall) -> Try {
        let method = reqwest::Method::from_bytes(http.method.as_str().as_bytes())
            .unwrap_or(reqwest::Method::POST);
        let mut request = self
            .client
            .request(method, &http.url)
            .timeout(http.timeout)
            .body(http.body.clone());
        for (name, value) in &http.headers {
            request = request.header(name, value);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => return failure(&e),
        };
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let result = programmatic::read_answer(status, &[]);
            let retry = result.as_ref().is_err_and(breaker::retryable);
            return Try { result, retry };
        }
        match read_body(response).await {
            Ok(body) => Try {
                result: programmatic::read_answer(status, &body),
                retry: false,
            },
            Err(tried) => tried,
        }
    }
}

#[async_trait::async_trait]
impl AmountCaller for HttpCaller {
    async fn decide(&self, calls: Vec<Call>) -> Vec<AmountOutcome> {
        join_all(calls.into_iter().map(|call| self.decide_one(call))).await
    }
}

/// The answer's body, at most [`MAX_ANSWER_BYTES`].
async fn read_body(mut response: reqwest::Response) -> Result<Vec<u8>, Try> {
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                    return Err(Try {
                        result: Err(FallbackReason::BadAnswer {
                            detail: format!("the answer is larger than {MAX_ANSWER_BYTES} bytes"),
                        }),
                        retry: false,
                    });
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(failure(&e)),
        }
    }
}

/// A try that got no answer: a timeout, or why the endpoint could not be reached (the error's
/// causes, without the URL). A request that could not even be built is not retried.
fn failure(e: &reqwest::Error) -> Try {
    if e.is_timeout() {
        return Try {
            result: Err(FallbackReason::Timeout),
            retry: true,
        };
    }
    let what = if e.is_builder() {
        "invalid request"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "the answer broke off"
    } else {
        "request failed"
    };
    let mut detail = what.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        detail.push_str(": ");
        detail.push_str(&cause.to_string());
        source = cause.source();
    }
    Try {
        result: Err(FallbackReason::Unreachable { detail }),
        retry: !e.is_builder(),
    }
}

/// An endpoint's name for breakers and metrics: its URL without credentials, query or
/// fragment (which may carry keys).
pub fn endpoint(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            u.set_query(None);
            u.set_fragment(None);
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => "invalid-url".into(),
    }
}

/// The metric label of a fallback's reason: its serialized `kind`.
pub fn reason_label(reason: &FallbackReason) -> &'static str {
    match reason {
        FallbackReason::Timeout => "timeout",
        FallbackReason::Unreachable { .. } => "unreachable",
        FallbackReason::Status { .. } => "status",
        FallbackReason::BadAnswer { .. } => "bad_answer",
        FallbackReason::CircuitOpen => "circuit_open",
        FallbackReason::NotProgrammatic => "not_programmatic",
        FallbackReason::NotCalled => "not_called",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_named_without_secrets() {
        assert_eq!(
            endpoint("https://user:pw@tenant.example:8443/points?key=s3cret#x"),
            "https://tenant.example:8443/points"
        );
        assert_eq!(endpoint("not a url"), "invalid-url");
    }

    #[test]
    fn reason_labels_are_the_serialized_kinds() {
        for reason in [
            FallbackReason::Timeout,
            FallbackReason::Unreachable { detail: "x".into() },
            FallbackReason::Status { status: 500 },
            FallbackReason::BadAnswer { detail: "x".into() },
            FallbackReason::CircuitOpen,
            FallbackReason::NotProgrammatic,
            FallbackReason::NotCalled,
        ] {
            let json = serde_json::to_value(&reason).unwrap();
            assert_eq!(json["kind"], reason_label(&reason));
        }
    }
}
