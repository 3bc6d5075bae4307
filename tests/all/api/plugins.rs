//! Plugins: uploaded through the sandbox's checks, listed beside the built-ins, deleted.

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::http::message;
use crate::support::server::{Server, data_dir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_are_uploaded_checked_listed_and_deleted() {
    let dir = data_dir();
    let server = Server::start(&dir).await;
    let client = server.http();
    let url = format!("{}/api/v1/plugins", server.url);
    let upload = |bytes: &'static [u8]| {
        let client = client.clone();
        let url = url.clone();
        async move {
            let response = client
                .post(url)
                .header("content-type", "application/wasm")
                .body(bytes)
                .send()
                .await
                .unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        }
    };

    let (status, body) = upload(crate::fixtures::HOSTILE).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        (
            body["name"].as_str(),
            body["version"].as_str(),
            body["kind"].as_str()
        ),
        (Some("hostile"), Some("0.1.0"), Some("strategy"))
    );
    let (status, _) = upload(crate::fixtures::HOSTILE).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the same bytes again change nothing"
    );

    let list: Value = client.get(&url).send().await.unwrap().json().await.unwrap();
    let names: Vec<(&str, bool)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["builtin"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        names,
        [
            ("direct", true),
            ("regional", true),
            ("canary", true),
            ("blue-green", true),
            ("rolling", true),
            ("default", true),
            ("hostile", false)
        ]
    );
    let canary = &list[2];
    assert_eq!(
        canary["paramsSchema"]["properties"]["initialPercentage"]["default"],
        10
    );

    for (what, bytes, status, expected) in [
        (
            "WASI import",
            crate::fixtures::WASI_STRATEGY,
            StatusCode::BAD_REQUEST,
            "imports `wasi:random/random@0.2.0`",
        ),
        (
            "wrong world",
            crate::fixtures::DESCRIBE_ONLY,
            StatusCode::BAD_REQUEST,
            "does not implement",
        ),
        (
            "garbage",
            &b"MZ\x90\x00 not wasm"[..],
            StatusCode::BAD_REQUEST,
            "not WebAssembly",
        ),
        (
            "core module",
            &b"\0asm\x01\0\0\0"[..],
            StatusCode::BAD_REQUEST,
            "found a core module",
        ),
        (
            "built-in name",
            hotswap_plugin_host::BUILTINS[5].bytes,
            StatusCode::CONFLICT,
            "`default` is the name of a built-in health-policy",
        ),
    ] {
        let (got, body) = upload(bytes).await;
        assert_eq!(got, status, "{what}: {body}");
        assert!(
            message(&body).contains(expected),
            "{what}: {:?}",
            message(&body)
        );
    }

    let response = client
        .delete(format!("{url}/hostile/0.1.0"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let response = client
        .delete(format!("{url}/hostile/0.1.0"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_over_max_component_bytes_is_refused_naming_the_key() {
    let dir = data_dir();
    let server = Server::start(&dir).await;
    let limit = hotswap_plugin_host::Limits::default().max_component_bytes;
    // Larger than any other body the server takes, smaller than the plugin limit: read whole.
    let mut bytes = crate::fixtures::HOSTILE.to_vec();
    bytes.resize(5 << 20, 0);
    assert!(bytes.len() < limit);
    let response = server
        .http()
        .post(format!("{}/api/v1/plugins", server.url))
        .header("content-type", "application/wasm")
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let over = vec![0u8; limit + 1];
    let response = server
        .http()
        .post(format!("{}/api/v1/plugins", server.url))
        .body(over)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = response.json().await.unwrap();
    let text = message(&body);
    assert!(text.contains("raise `max-component-bytes`"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugin_limits_are_shown_to_operators() {
    let dir = data_dir();
    let server = Server::start(&dir).await;
    let limits: Value = server
        .http()
        .get(format!("{}/api/v1/plugin-limits", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let defaults = hotswap_plugin_host::Limits::default();
    assert_eq!(
        limits["maxComponentBytes"],
        defaults.max_component_bytes as u64
    );
    assert_eq!(limits["maxCoreInstances"], defaults.max_core_instances);
    assert_eq!(limits["fuelPerCall"], defaults.fuel_per_call);
    assert_eq!(limits["deadlineMs"], defaults.deadline.as_millis() as u64);
}
