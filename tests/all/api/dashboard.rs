//! The dashboard's page and assets: served from the binary without a credential, under a
//! policy that lets them load nothing from elsewhere, while the data behind them stays closed.

use reqwest::StatusCode;

use crate::support::server::{Server, data_dir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_is_served_from_the_binary_and_its_data_needs_a_sign_in() {
    let dir = data_dir();
    let server = Server::start(&dir).await;
    let anonymous = reqwest::Client::new();
    for (path, kind, holds) in [
        ("/", "text/html", "HotSwap"),
        ("/dashboard/app.js", "text/javascript", "REFRESH_MS"),
        ("/dashboard/app.css", "text/css", ".bar"),
    ] {
        let r = anonymous
            .get(format!("{}{path}", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let header = |name: &str| {
            r.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default()
        };
        assert!(header("content-type").starts_with(kind), "{path}");
        assert_eq!(
            header("content-security-policy"),
            hotswap_server::api::dashboard::CONTENT_SECURITY_POLICY,
            "{path}"
        );
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert!(r.text().await.unwrap().contains(holds), "{path}");
    }
    // What the page shows comes from the API, which asks for a credential.
    let r = anonymous
        .get(format!("{}/api/v1/fleet", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let summary: serde_json::Value = server
        .http()
        .get(format!("{}/api/v1/fleet", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(summary["devices"], 0, "{summary}");
    // A path that is neither stays a JSON 404.
    let r = anonymous
        .get(format!("{}/dashboard/missing.js", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}
