//! `/healthz`, `/readyz` and `/metrics` over HTTP (default `127.0.0.1:9464`).
//!
//! - `/healthz`: 200 while the process runs.
//! - `/readyz`: 200 once the pipeline runs (it has joined its consumer group and been
//!   given its partitions), no task is restoring its stores and the ledger sink (when it
//!   runs here) reaches PostgreSQL; otherwise 503 with the reason.
//! - `/metrics`: the Prometheus text exposition format of the one Prometheus registry of the process (the runtime's, the application's and
//!   the ledger sink's metrics).
//!
//! An application adds its own routes (the payment lookup, `/payments/{id}`) with the
//! `routes` argument of [`serve`].

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use prometheus::{Encoder, Registry, TextEncoder};
use tracing::{info, warn};

/// What `/readyz` reports, shared by the pipeline and the sink.
#[derive(Debug)]
pub struct Health {
    running: AtomicBool,
    /// Ids of the tasks restoring their stores.
    restoring_tasks: Mutex<BTreeSet<String>>,
    /// Names of the ledger sink's tasks whose last database call failed.
    database_unreachable: Mutex<BTreeSet<String>>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            running: AtomicBool::new(false),
            restoring_tasks: Mutex::default(),
            database_unreachable: Mutex::default(),
        }
    }
}

impl Health {
    /// The pipeline has started (or stopped) processing.
    pub fn set_running(&self, running: bool) {
        self.running.store(running, Ordering::SeqCst);
    }

    /// Task `task` started restoring its stores.
    pub fn restore_started(&self, task: &str) {
        self.restoring().insert(task.to_string());
    }

    /// Task `task` finished (or gave up) restoring.
    pub fn restore_finished(&self, task: &str) {
        self.restoring().remove(task);
    }

    fn restoring(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        // The set stays consistent even if a holder panicked.
        self.restoring_tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether the last database call of the ledger sink's task `task` succeeded. The
    /// instance is not ready while any task's last call failed, whatever the others'.
    pub fn set_database_reachable(&self, task: &str, reachable: bool) {
        let mut unreachable = self
            .database_unreachable
            .lock()
            .expect("health lock poisoned");
        if reachable {
            unreachable.remove(task);
        } else {
            unreachable.insert(task.to_string());
        }
    }

    /// `Ok` when ready, otherwise why not.
    pub fn readiness(&self) -> Result<(), String> {
        if !self.running.load(Ordering::SeqCst) {
            return Err("pipeline not running".into());
        }
        let restoring = self.restoring();
        if !restoring.is_empty() {
            let tasks: Vec<&str> = restoring.iter().map(String::as_str).collect();
            return Err(format!(
                "{} task(s) restoring state stores: {}",
                tasks.len(),
                tasks.join(", ")
            ));
        }
        let unreachable = self
            .database_unreachable
            .lock()
            .expect("health lock poisoned");
        if !unreachable.is_empty() {
            let tasks: Vec<&str> = unreachable.iter().map(String::as_str).collect();
            return Err(format!(
                "ledger sink cannot reach PostgreSQL (sink task(s): {})",
                tasks.join(", ")
            ));
        }
        Ok(())
    }
}

#[derive(Clone)]
struct Shared {
    health: Arc<Health>,
    registry: Registry,
}

/// Binds `address` and serves the endpoints, and `routes` beside them, until the process
/// ends. Returns the bound address (port 0 picks a free port).
///
/// They are served on a thread of their own (`http`, with a single-threaded Tokio
/// runtime), not on the process's runtime: there the stream thread and the ledger
/// sink's tasks hold the workers for milliseconds at a time, and a payment lookup or a
/// scrape waited behind them (p99 24 ms for a lookup on a busy instance).
///
/// # Errors
/// The I/O error when the address cannot be bound or the thread cannot start.
pub async fn serve(
    address: &str,
    health: Arc<Health>,
    registry: Registry,
    routes: Router,
) -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(address)?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(Shared { health, registry })
        .merge(routes);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("http".into())
        .spawn(move || {
            runtime.block_on(async move {
                let served = match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => axum::serve(listener, app).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = served {
                    warn!(error = %e, "the HTTP endpoints stopped");
                }
            });
        })?;
    info!(address = %bound, "serving /healthz, /readyz, /metrics and the application's routes");
    Ok(bound)
}

async fn readyz(State(shared): State<Shared>) -> (StatusCode, String) {
    match shared.health.readiness() {
        Ok(()) => (StatusCode::OK, "ready\n".into()),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    }
}

async fn metrics(State(shared): State<Shared>) -> (StatusCode, String) {
    let mut buffer = Vec::new();
    match TextEncoder::new().encode(&shared.registry.gather(), &mut buffer) {
        Ok(()) => (
            StatusCode::OK,
            String::from_utf8_lossy(&buffer).into_owned(),
        ),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_needs_running_no_restore_and_the_database() {
        let health = Health::default();
        assert!(health.readiness().is_err());
        health.set_running(true);
        assert_eq!(health.readiness(), Ok(()));
        health.restore_started("1_0");
        health.restore_started("1_2");
        assert_eq!(
            health.readiness().unwrap_err(),
            "2 task(s) restoring state stores: 1_0, 1_2"
        );
        health.restore_finished("1_0");
        health.restore_finished("1_2");
        assert_eq!(health.readiness(), Ok(()));
        health.set_database_reachable("ledger_entries", false);
        health.set_database_reachable("statuses", false);
        health.set_database_reachable("statuses", true);
        assert_eq!(
            health.readiness().unwrap_err(),
            "ledger sink cannot reach PostgreSQL (sink task(s): ledger_entries)",
            "one task reaching the database does not hide another that cannot"
        );
        health.set_database_reachable("ledger_entries", true);
        assert_eq!(health.readiness(), Ok(()));
    }
}
