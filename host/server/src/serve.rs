//! `hotswap serve`: the store, the plugin runtime, the orchestrator and the API on one listener.

use std::sync::Arc;

use anyhow::{Context, Result};
use hotswap_plugin_host::{PluginRuntime, RuntimeConfig};
use hotswap_store::Store;
use tokio::net::TcpListener;

use crate::api::{AppState, router};
use crate::config::ServerConfig;
use crate::credentials::Credentials;
use crate::doorbell::Doorbell;
use crate::metrics::Metrics;
use crate::orchestrator::Orchestrator;
use crate::rollout::Rollout;

/// Opens the data directory and builds the shared state.
pub fn state(config: &ServerConfig) -> Result<Arc<AppState>> {
    let store = Store::open_in(
        &config.database,
        &config.data_dir,
        Arc::new(hotswap_store::SystemClock),
    )
    .with_context(|| match &config.database {
        hotswap_store::Database::Sqlite => format!("opening {}", config.data_dir.display()),
        hotswap_store::Database::Postgres(_) => "opening the PostgreSQL database".to_string(),
    })?;
    state_with_store(config, store)
}

/// The shared state over a store already open (tests give theirs a clock they move by hand).
pub fn state_with_store(config: &ServerConfig, store: Store) -> Result<Arc<AppState>> {
    let admin_token_file = crate::credentials::first_start(&store, &config.data_dir)
        .context("making the first administrator token")?;
    let runtime = PluginRuntime::new(RuntimeConfig {
        cache_dir: Some(config.data_dir.join("compiled")),
        // With the server's other secrets, not in the directory it protects.
        cache_key_file: Some(config.data_dir.join(hotswap_plugin_host::CACHE_KEY_FILE)),
        limits: config.plugin_limits,
        ceilings: Some(config.plugin_ceilings),
    })?;
    let sessions = crate::sessions::Sessions::open(&config.data_dir, &store)
        .context("opening the session key")?;
    let announcer = store.announcer();
    let doorbell = Arc::new(Doorbell::announcing(announcer.clone()));
    let credentials = Arc::new(Credentials::new(announcer));
    let woken = Arc::downgrade(&doorbell);
    let forgetting = Arc::downgrade(&credentials);
    store.listen(move |heard| {
        if let Some(credentials) = forgetting.upgrade() {
            credentials.heard(&heard);
        }
        if let Some(doorbell) = woken.upgrade() {
            doorbell.wake(&heard);
        }
    });
    let store = Arc::new(store);
    let metrics = Arc::new(Metrics::default());
    let rollout = Rollout {
        store: store.clone(),
        runtime: runtime.clone(),
        doorbell: doorbell.clone(),
        metrics: metrics.clone(),
        traces: config.traces.clone(),
        credentials: credentials.clone(),
        protected_labels: config.protected_labels.clone().into(),
    };
    Ok(Arc::new(AppState {
        rollout,
        store,
        doorbell,
        runtime,
        trusted_keys: config.trusted_keys.clone(),
        limits: config.limits,
        metrics,
        tick: config.tick,
        artifacts: Default::default(),
        credentials,
        admin_token_file,
        rate_limits: crate::credentials::RateLimits::new(
            config.limits.token_rate,
            config.limits.device_rate,
            config.limits.address_rate,
        ),
        refusals: Default::default(),
        in_flight: crate::credentials::InFlight::new(config.limits.operator_in_flight),
        password_checks: tokio::sync::Semaphore::new(
            std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        ),
        sessions,
        enrollment: config.enrollment.clone(),
        unchecked_devices: config.unchecked_devices,
        traces: config.traces.clone(),
    }))
}

/// Serves the API on `listener` (HTTP/1.1, and HTTP/2 with prior knowledge on the same port),
/// and runs the orchestrator, until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    serve_on(listener, state, None, shutdown).await
}

/// [`serve`], over TLS when `tls` is given (HTTP/2 and HTTP/1.1 by ALPN).
pub async fn serve_on(
    listener: TcpListener,
    state: Arc<AppState>,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let _orchestrator = Orchestrator::new(state.rollout.clone()).spawn(state.tick);
    // Keys quiet long enough to be back at their full burst are dropped, so the limiters do not
    // grow with every device ever seen.
    let limits = state.clone();
    let shrinking = tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            every.tick().await;
            limits.rate_limits.shrink();
        }
    });
    // The counts of anonymous refusals, written once their minute is over.
    let counted = state.clone();
    let counting = tokio::spawn(async move {
        let mut every = tokio::time::interval(crate::refusals::FLUSH_EVERY);
        loop {
            every.tick().await;
            let now = counted.store.clock().now().seconds().0;
            write_refusals(&counted, Some(now)).await;
        }
    });
    let state_at_end = state.clone();
    let closing = state.clone();
    // Check-ins waiting for an assignment are answered at once, so shutting down does not wait
    // for their long polls to run out.
    let shutdown = async move {
        shutdown.await;
        closing.doorbell.close();
    };
    let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let served = match tls {
        None => axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .context("serving HTTP"),
        Some(config) => {
            let handle = axum_server::Handle::new();
            let stopping = handle.clone();
            tokio::spawn(async move {
                shutdown.await;
                // Requests in flight get this long to finish, as the plain server lets them.
                stopping.graceful_shutdown(Some(std::time::Duration::from_secs(30)));
            });
            let listener = listener.into_std()?;
            axum_server::from_tcp_rustls(
                listener,
                axum_server::tls_rustls::RustlsConfig::from_config(config),
            )?
            .handle(handle)
            .serve(app)
            .await
            .context("serving HTTPS")
        }
    };
    shrinking.abort();
    counting.abort();
    write_refusals(&state_at_end, None).await;
    served
}

/// Writes the counts of anonymous refusals whose minute is over by `now` (all, when `None`).
async fn write_refusals(state: &AppState, now: Option<i64>) {
    for entry in state.refusals.due(now) {
        if let Err(e) = state.store.append_audit(entry).await {
            tracing::warn!(error = %e, "writing a count of refused credentials to the audit log failed");
        }
    }
}
