//! Firmware: registered, listed, shown and deprecated; every bad registration refused with
//! its status and a message that names what is wrong; kept across a restart.

use hotswap_device_vm::Version;
use hotswap_device_vm::release::ReleaseKey;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::http::{assert_refusals, edited, message, post};
use crate::support::server::{Server, data_dir};
use crate::support::{hex, registration_json, registry_image, release_key};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firmware_is_registered_listed_and_deprecated() {
    let dir = data_dir();
    let server = Server::start(&dir).await;
    let client = server.http();
    let image = registry_image();

    let (status, body) = post(
        &client,
        format!("{}/api/v1/firmware", server.url),
        &registration_json(&release_key(), "1.0.0", &image),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["version"], "1.0.0");
    assert_eq!(body["size"], image.len());
    assert_eq!(body["keyId"], release_key().trusted().id.to_string());
    let id = body["id"].as_i64().unwrap();

    let (status, _) = post(
        &client,
        format!("{}/api/v1/firmware", server.url),
        &registration_json(&release_key(), "1.1.0", &image),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let list: Value = client
        .get(format!(
            "{}/api/v1/firmware?deviceModel=sensor-v1",
            server.url
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
    let other: Value = client
        .get(format!(
            "{}/api/v1/firmware?deviceModel=gateway",
            server.url
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(other, json!([]));

    let (status, body) = post(
        &client,
        format!("{}/api/v1/firmware/{id}/deprecate", server.url),
        &json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["deprecated"], true);
    let list: Value = client
        .get(format!("{}/api/v1/firmware", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        list.as_array().unwrap().len(),
        1,
        "deprecated versions are left out by default"
    );
    let all: Value = client
        .get(format!(
            "{}/api/v1/firmware?includeDeprecated=true",
            server.url
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all.as_array().unwrap().len(), 2);

    // Everything survives a restart on the same data directory.
    server.stop().await;
    let server = Server::start(&dir).await;
    let shown: Value = client
        .get(format!("{}/api/v1/firmware/{id}", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["deprecated"], true);
    assert_eq!(
        shown["checksum"],
        format!(
            "sha256:{}",
            hex(&hotswap_device_vm::Manifest::for_image(Version::new(1, 0, 0), &image, 0).sha256)
        )
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_registrations_get_the_right_status_and_a_clear_message() {
    let dir = data_dir();
    let server = Server::start(&dir).await;
    let client = server.http();
    let url = format!("{}/api/v1/firmware", server.url);
    let image = registry_image();
    let good = registration_json(&release_key(), "2.0.0", &image);

    let base = good.clone();
    let with = |f: &dyn Fn(&mut Value)| edited(&base, f);
    let cases: Vec<(&str, Value, StatusCode, &str)> = vec![
        (
            "unknown field",
            with(&|b| b["firmwareVersion"] = json!("2.0.0")),
            StatusCode::BAD_REQUEST,
            "unknown field `firmwareVersion`",
        ),
        (
            "missing field",
            with(&|b| {
                b.as_object_mut().unwrap().remove("checksum");
            }),
            StatusCode::BAD_REQUEST,
            "missing field `checksum`",
        ),
        (
            "wrong type",
            with(&|b| b["securityCounter"] = json!("high")),
            StatusCode::BAD_REQUEST,
            "securityCounter",
        ),
        (
            "bad version",
            with(&|b| b["version"] = json!("two")),
            StatusCode::BAD_REQUEST,
            "`version` must be semver",
        ),
        (
            "pre-release",
            with(&|b| b["version"] = json!("2.0.0-rc1")),
            StatusCode::BAD_REQUEST,
            "pre-release",
        ),
        (
            "empty model",
            with(&|b| b["deviceModel"] = json!("")),
            StatusCode::BAD_REQUEST,
            "`deviceModel` must not be empty",
        ),
        (
            "checksum mismatch",
            with(&|b| b["checksum"] = json!(format!("sha256:{}", "0".repeat(64)))),
            StatusCode::BAD_REQUEST,
            "checksum mismatch",
        ),
        (
            "checksum format",
            with(&|b| b["checksum"] = json!("md5:abc")),
            StatusCode::BAD_REQUEST,
            "`checksum` must be `sha256:<hex>`",
        ),
        (
            "bad base64",
            with(&|b| b["binary"] = json!("!!!")),
            StatusCode::BAD_REQUEST,
            "`binary` is not valid base64",
        ),
        (
            "binary url",
            with(&|b| {
                b.as_object_mut().unwrap().remove("binary");
                b["binaryUrl"] = json!("https://example.invalid/fw.bin");
            }),
            StatusCode::BAD_REQUEST,
            "`binaryUrl` is not supported",
        ),
        (
            "signature format",
            with(&|b| b["signature"] = json!("abcd")),
            StatusCode::BAD_REQUEST,
            "`signature` must be 64 bytes",
        ),
        (
            "bad signature",
            with(&|b| {
                let other = registration_json(&release_key(), "2.0.1", &image);
                b["signature"] = other["signature"].clone();
            }),
            StatusCode::BAD_REQUEST,
            "does not verify against any of the server's 1 trusted release keys",
        ),
        (
            "unknown key",
            registration_json(&ReleaseKey::from_seed([9; 32]), "2.0.0", &image),
            StatusCode::BAD_REQUEST,
            "does not verify",
        ),
        (
            "binary over the limit",
            registration_json(&release_key(), "2.0.0", &vec![1u8; 100 << 10]),
            StatusCode::PAYLOAD_TOO_LARGE,
            "the limit is 65536",
        ),
        (
            "body over the limit",
            registration_json(&release_key(), "2.0.0", &vec![1u8; 300 << 10]),
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body over the limit",
        ),
    ];
    assert_refusals(&client, &url, cases).await;

    // Malformed JSON and a missing content type.
    let response = client
        .post(&url)
        .header("content-type", "application/json")
        .body("{\"version\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert!(
        message(&body).contains("Failed to parse the request body as JSON"),
        "{body}"
    );
    let response = client.post(&url).body("{}").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // Nothing of the above was stored; a duplicate is a conflict.
    let (status, _) = post(&client, url.clone(), &good).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = post(&client, url.clone(), &good).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(message(&body).contains("already registered"), "{body}");
    let list: Value = client.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);

    // Unknown ids and endpoints are JSON 404s; bad query parameters are 400s.
    let response = client.get(format!("{url}/999")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        message(&response.json::<Value>().await.unwrap()),
        "no firmware with id 999"
    );
    let response = client
        .get(format!("{}/api/v1/nothing", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = client.get(format!("{url}?model=x")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let health: Value = client
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    server.stop().await;
}
