//! `/metrics`: requests by route and status, and the registry's sizes.

use reqwest::StatusCode;

use crate::support::http::post;
use crate::support::server::{Server, data_dir};
use crate::support::{registration_json, registry_image, release_key};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_by_route_and_status_and_registry_sizes() {
    let dir = data_dir();
    let server = Server::start(&dir).await;
    let client = server.http();
    let url = format!("{}/api/v1/firmware", server.url);
    let image = registry_image();
    assert_eq!(
        post(
            &client,
            url.clone(),
            &registration_json(&release_key(), "1.0.0", &image)
        )
        .await
        .0,
        StatusCode::CREATED
    );
    assert_eq!(
        post(
            &client,
            url.clone(),
            &registration_json(&release_key(), "1.0.0", &image)
        )
        .await
        .0,
        StatusCode::CONFLICT
    );
    assert_eq!(
        client
            .get(format!("{url}/1"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        client
            .get(format!("{url}/2"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    let response = client
        .get(format!("{}/metrics", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = response.text().await.unwrap();
    for line in [
        r#"hotswap_http_requests_total{method="POST",route="/api/v1/firmware",status="201"} 1"#,
        r#"hotswap_http_requests_total{method="POST",route="/api/v1/firmware",status="409"} 1"#,
        r#"hotswap_http_requests_total{method="GET",route="/api/v1/firmware/{id}",status="200"} 1"#,
        r#"hotswap_http_requests_total{method="GET",route="/api/v1/firmware/{id}",status="404"} 1"#,
        "hotswap_firmware_versions 1",
        "hotswap_devices 0",
        "hotswap_uploaded_plugins 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    server.stop().await;
}
