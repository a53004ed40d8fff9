//! The payment lookup: `GET /payments/{payment_id}` on every instance's HTTP endpoint,
//! and `paystream payment <id>`, which asks it (docs/architecture.md, "Interactive
//! queries").
//!
//! The endpoint answers from the `payments` store of the task that holds the payment:
//! here when the task runs here; otherwise it forwards the request to the live instance
//! that runs it (by the heartbeats' directory) and passes its answer on; when that
//! instance does not answer within [`FORWARD_TIMEOUT`], or no live instance runs the
//! task (a failover is under way), from this instance's standby of the task, saying how
//! far behind it is. Every answer names who served it (`served_by`).
//!
//! | status | when |
//! |---|---|
//! | 200 | the payment, as [`paystream_processors::lifecycle::lookup::payment_view`] renders it, with `served_by` |
//! | 400 | the id breaks the payment id rule ([`paystream_schemas::validate::check_payment_id`]); the rule is named, the id is not echoed |
//! | 404 | the pipeline holds nothing for that id (nothing applied, nothing waiting) |
//! | 503 | no instance serves the payment's task now (a rebalance or restore; `Retry-After: 1`), or the pipeline has not started |
//! | 500 | the store could not be read, or its value not decoded |

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use clap::Args;
use paystream_processors::lifecycle::lookup::payment_view;
use paystream_processors::stores;
use paystream_runtime::Config;
use paystream_runtime::interactive_queries::{
    InteractiveQueries, KeyLocation, LocalValue, QueryError,
};
use serde_json::{Value, json};
use tracing::debug;

/// Longest a forwarded lookup waits for the instance that runs the payment's task
/// before this instance answers from its standby.
pub const FORWARD_TIMEOUT: Duration = Duration::from_millis(1_000);

/// The header a forwarded lookup carries (the forwarding instance's id): the instance
/// it reaches answers from its own stores and never forwards again.
const FORWARDED_BY: &str = "x-paystream-forwarded-by";

/// What the lookup endpoint needs.
#[derive(Clone)]
struct Lookup {
    queries: Arc<InteractiveQueries>,
    client: reqwest::Client,
    instance_id: String,
}

/// The `/payments/{payment_id}` route over `queries`, for `instance_id`.
///
/// # Errors
/// When the HTTP client for forwarding cannot be built.
pub fn routes(queries: Arc<InteractiveQueries>, instance_id: &str) -> anyhow::Result<Router> {
    let client = reqwest::Client::builder()
        .timeout(FORWARD_TIMEOUT)
        .connect_timeout(FORWARD_TIMEOUT)
        .build()
        .context("building the HTTP client that forwards payment lookups")?;
    Ok(Router::new()
        .route("/payments/{payment_id}", get(lookup))
        .with_state(Lookup {
            queries,
            client,
            instance_id: instance_id.to_string(),
        }))
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{body}\n"),
    )
        .into_response()
}

fn error_response(status: StatusCode, message: &str) -> Response {
    let mut response = json_response(status, &json!({ "error": message }));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

async fn lookup(
    State(lookup): State<Lookup>,
    Path(payment_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(violation) = paystream_schemas::validate::check_payment_id(&payment_id) {
        return error_response(StatusCode::BAD_REQUEST, &violation.to_string());
    }
    let forwarded = headers.contains_key(FORWARDED_BY);
    let key = payment_id.as_bytes();
    let location = if forwarded {
        // Asked by another instance, which found this one in its directory: answer
        // from here (a standby, if the task has just moved away).
        lookup
            .queries
            .read_here(stores::PAYMENTS, key)
            .map(KeyLocation::Local)
    } else {
        lookup.queries.locate(stores::PAYMENTS, key)
    };
    match location {
        Ok(KeyLocation::Local(local)) => local_answer(&lookup, &payment_id, &local, None),
        Ok(KeyLocation::Remote {
            task,
            instance_id,
            http_address,
        }) => match forward(&lookup, &http_address, &payment_id).await {
            Ok(response) => response,
            Err(why) => {
                debug!(%task, owner = %instance_id, %why, "forwarded lookup failed; answering from here");
                let note = format!(
                    "instance {instance_id}, which runs task {task}, did not answer ({why}); \
                     answered from this instance's copy"
                );
                match lookup.queries.read_here(stores::PAYMENTS, key) {
                    Ok(local) => local_answer(&lookup, &payment_id, &local, Some(note)),
                    Err(e) => query_error(&e),
                }
            }
        },
        Err(e) => query_error(&e),
    }
}

fn query_error(error: &QueryError) -> Response {
    let status = match error {
        QueryError::Unavailable { .. } | QueryError::NotStarted => StatusCode::SERVICE_UNAVAILABLE,
        QueryError::UnknownStore(_) | QueryError::Store { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error_response(status, &error.to_string())
}

/// Answers from this instance's stores.
fn local_answer(
    lookup: &Lookup,
    payment_id: &str,
    local: &LocalValue,
    note: Option<String>,
) -> Response {
    let mut served_by = json!({
        "instance_id": lookup.instance_id,
        "role": local.role.as_str(),
        "task": local.task.to_string(),
    });
    if let Some(staleness) = &local.staleness {
        served_by["standby_lag_records"] = json!(staleness.lag_records);
        served_by["standby_applied_ms_ago"] = json!(staleness.applied_ms_ago);
    }
    if let Some(note) = note {
        served_by["note"] = json!(note);
    }
    let Some(value) = &local.value else {
        return json_response(
            StatusCode::NOT_FOUND,
            &json!({
                "error": format!("the pipeline holds nothing for payment {payment_id}"),
                "served_by": served_by,
            }),
        );
    };
    match payment_view(payment_id, value) {
        Ok(mut view) => {
            view["served_by"] = served_by;
            json_response(StatusCode::OK, &view)
        }
        Err(e) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("the stored value of the payment could not be read: {e}"),
        ),
    }
}

/// Asks the instance at `http_address` and passes its answer on (any status it gives
/// but a 5xx, which is answered from here).
async fn forward(
    lookup: &Lookup,
    http_address: &str,
    payment_id: &str,
) -> Result<Response, String> {
    let mut url = reqwest::Url::parse(&format!("http://{http_address}/payments/"))
        .map_err(|e| format!("its address {http_address:?} is not usable: {e}"))?;
    url.path_segments_mut()
        .map_err(|()| format!("its address {http_address:?} is not usable"))?
        .pop_if_empty()
        .push(payment_id);
    let started = Instant::now();
    let response = lookup
        .client
        .get(url)
        .header(FORWARDED_BY, &lookup.instance_id)
        .send()
        .await
        .map_err(|e| format!("{e}"))?;
    let status = response.status();
    if status.is_server_error() {
        return Err(format!("it answered {status}"));
    }
    let body = response.bytes().await.map_err(|e| format!("{e}"))?;
    debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "forwarded lookup answered"
    );
    let status = StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    Ok((status, [(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// The address this instance's HTTP endpoints are reached at by the others:
/// `http.advertised_address`, else the bound address unless it is a wildcard.
pub fn advertised_address(config: &Config, bound: std::net::SocketAddr) -> Option<String> {
    if !config.http.advertised_address.is_empty() {
        return Some(config.http.advertised_address.clone());
    }
    (!bound.ip().is_unspecified()).then(|| bound.to_string())
}

/// Options of `paystream payment`.
#[derive(Debug, Args)]
pub struct PaymentArgs {
    /// The payment id.
    pub payment_id: String,
    /// Base URL of an instance's HTTP endpoint; by default the configured
    /// `http.advertised_address`, else `http.listen_address`.
    #[arg(long)]
    pub url: Option<String>,
}

/// `paystream payment <id>`: prints what the pipeline knows of the payment now (JSON),
/// from any instance, which forwards to the one that holds it. Exit code 0 when found,
/// 1 when the pipeline holds nothing for it.
///
/// # Errors
/// No instance answers; it answers 400 (the id's rule is named), 503 or 500.
pub async fn payment(config: Config, args: PaymentArgs) -> anyhow::Result<ExitCode> {
    let base = match args.url {
        Some(url) => url,
        None => {
            let address = if config.http.advertised_address.is_empty() {
                config.http.listen_address.clone()
            } else {
                config.http.advertised_address.clone()
            };
            anyhow::ensure!(
                !address.is_empty(),
                "http.listen_address is empty (the endpoint is off); pass --url"
            );
            format!("http://{}", address.replace("0.0.0.0", "127.0.0.1"))
        }
    };
    let mut url = reqwest::Url::parse(&base).with_context(|| format!("--url {base:?}"))?;
    url.path_segments_mut()
        .map_err(|()| anyhow::anyhow!("--url {base:?} cannot have a path"))?
        .pop_if_empty()
        .push("payments")
        .push(&args.payment_id);
    let response = reqwest::Client::builder()
        .timeout(FORWARD_TIMEOUT * 3)
        .build()?
        .get(url)
        .send()
        .await
        .with_context(|| format!("asking {base} (is an instance running there?)"))?;
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .with_context(|| format!("reading the answer of {base}"))?;
    let body: Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{base} answered {status} with a body that is not JSON"))?;
    match status.as_u16() {
        200 => {
            println!("{}", serde_json::to_string_pretty(&body)?);
            Ok(ExitCode::SUCCESS)
        }
        404 => {
            eprintln!("{}", body["error"].as_str().unwrap_or("not found"));
            Ok(ExitCode::from(1))
        }
        _ => anyhow::bail!(
            "{base} answered {status}: {}",
            body["error"].as_str().unwrap_or("no reason given")
        ),
    }
}
