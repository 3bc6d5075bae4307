//! The web dashboard: one page and its script and style, compiled into the binary and served at
//! `/` (nothing is fetched from anywhere else at run time; factory networks are often offline).
//! The page calls the operator API with the signed-in user's session, so it is served without a
//! credential and shows nothing until one is given.

use axum::Router;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderName, HeaderValue};
use axum::response::IntoResponse;
use axum::routing::get;

const INDEX: &str = include_str!("../../dashboard/index.html");
const SCRIPT: &str = include_str!("../../dashboard/app.js");
const STYLE: &str = include_str!("../../dashboard/app.css");

/// Where the dashboard lives; the API keeps `/api/`, `/metrics` and `/healthz`.
pub const DASHBOARD_PATHS: [&str; 3] = ["/", "/dashboard/app.js", "/dashboard/app.css"];

/// Only this origin's own script, style and API: an injected `<script>` or a link to elsewhere
/// does not run or load.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static(content_type)),
            // Each start of the server may carry a new build of the page.
            (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                HeaderName::from_static("content-security-policy"),
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            ),
            (
                HeaderName::from_static("x-content-type-options"),
                HeaderValue::from_static("nosniff"),
            ),
        ],
        body,
    )
}

/// The dashboard's routes, open to anyone: the data behind them is not.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            DASHBOARD_PATHS[0],
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            DASHBOARD_PATHS[1],
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            DASHBOARD_PATHS[2],
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_assets_load_nothing_from_elsewhere() {
        for (name, text) in [
            ("index.html", INDEX),
            ("app.js", SCRIPT),
            ("app.css", STYLE),
        ] {
            for scheme in ["http://", "https://", "//cdn", "@import"] {
                assert!(!text.contains(scheme), "{name} refers to {scheme}");
            }
        }
        assert!(INDEX.contains("src=\"/dashboard/app.js\""));
        // Values from the server go in as text, never as markup.
        assert!(!SCRIPT.contains("innerHTML"));
    }
}
