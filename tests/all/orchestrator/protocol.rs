//! The device protocol's refusals: unknown devices and assignments, bad states, bad ranges,
//! damaged blobs.

use hotswap_device_vm::Version;
use hotswap_device_vm::image::Manifest;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::http::{get, message, post};
use crate::support::server::{Server, data_dir, register_devices, register_firmware};
use crate::support::{hex, image};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_protocol_refuses_bad_input_with_clear_messages() {
    let dir = data_dir();
    let server = Server::start(&dir).await;
    let api = server.client();
    let url = server.url.clone();
    let client = reqwest::Client::new();
    register_firmware(&api, "1.0.0").await;
    register_devices(&api, 1, "").await;
    let devices = format!("{url}/api/v1/devices");
    let cases: Vec<(&str, String, Value, StatusCode, &str)> = vec![
        (
            "unknown device",
            format!("{devices}/nope/check-in"),
            json!({}),
            StatusCode::NOT_FOUND,
            "no device `nope`: register it first",
        ),
        (
            "unknown field",
            format!("{devices}/d-000/check-in"),
            json!({"battery": 3}),
            StatusCode::BAD_REQUEST,
            "unknown field `battery`",
        ),
        (
            "health without `healthy`",
            format!("{devices}/d-000/check-in"),
            json!({"health": {"traps": 1}}),
            StatusCode::BAD_REQUEST,
            "missing field `healthy`",
        ),
        (
            "unknown assignment",
            format!("{devices}/d-000/reports"),
            json!({"assignmentId": 42, "state": "downloading"}),
            StatusCode::NOT_FOUND,
            "no assignment 42 for device `d-000`",
        ),
        (
            "a state devices do not report",
            format!("{devices}/d-000/reports"),
            json!({"assignmentId": 42, "state": "pending"}),
            StatusCode::BAD_REQUEST,
            "a device cannot report `pending`",
        ),
        (
            "empty batch",
            format!("{devices}/d-000/reports/batch"),
            json!({"reports": []}),
            StatusCode::BAD_REQUEST,
            "a batch carries 1 to 16 reports, found 0",
        ),
        (
            "a batch naming an unknown assignment",
            format!("{devices}/d-000/reports/batch"),
            json!({"reports": [{"assignmentId": 42, "state": "downloading"}]}),
            StatusCode::NOT_FOUND,
            "report 0: no assignment 42 for device `d-000`",
        ),
        (
            "no such state",
            format!("{devices}/d-000/reports"),
            json!({"assignmentId": 42, "state": "exploded"}),
            StatusCode::BAD_REQUEST,
            "unknown variant `exploded`",
        ),
    ];
    for (what, at, body, status, expected) in cases {
        let (got, answer) = post(&client, at, &body).await;
        assert_eq!(got, status, "{what}: {answer}");
        assert!(message(&answer).contains(expected), "{what}: {answer}");
    }
    // Nothing to do: no assignment; the check-in is recorded.
    let (status, answer) = post(
        &client,
        format!("{devices}/d-000/check-in"),
        &json!({"firmwareVersion": "1.0.0", "slots": [{"slot": "a", "version": "1.0.0", "state": "active"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer, json!({"assignment": null, "pollSeconds": 30}));
    let device = get(&client, format!("{devices}/d-000")).await;
    assert_eq!(device["status"], "online");
    assert_eq!(device["firmwareVersion"], "1.0.0");
    assert_eq!(device["slots"][0]["slot"], "a");
    // Repeated check-ins that tell nothing new are not written again, but anything new is kept
    // at once: health, then the version.
    for (body, health_traps, version) in [
        (
            json!({"firmwareVersion": "1.0.0", "health": {"healthy": true}}),
            0,
            "1.0.0",
        ),
        (
            json!({"firmwareVersion": "1.0.0", "health": {"healthy": true}}),
            0,
            "1.0.0",
        ),
        (
            json!({"firmwareVersion": "1.0.0", "health": {"healthy": false, "traps": 3}}),
            3,
            "1.0.0",
        ),
        (
            json!({"firmwareVersion": "1.0.1", "health": {"healthy": false, "traps": 3}}),
            3,
            "1.0.1",
        ),
    ] {
        let (status, answer) = post(&client, format!("{devices}/d-000/check-in"), &body).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let device = get(&client, format!("{devices}/d-000")).await;
        assert_eq!(
            device["health"]["traps"], health_traps,
            "{body}: {device:#}"
        );
        assert_eq!(device["health"]["version"], version, "{body}: {device:#}");
        assert_eq!(device["firmwareVersion"], version, "{body}: {device:#}");
    }

    // Artifacts: a whole download, a resumed one, and unknown or malformed names.
    let bytes = image("1.0.0");
    let sha = hex(&Manifest::for_image(Version::parse("1.0.0").unwrap(), &bytes, 0).sha256);
    let artifact = format!("{url}/api/v1/artifacts/{sha}");
    let whole = client.get(&artifact).send().await.unwrap();
    assert_eq!(whole.status(), StatusCode::OK);
    assert_eq!(whole.bytes().await.unwrap().as_ref(), bytes.as_slice());
    let rest = client
        .get(&artifact)
        .header("Range", "bytes=100-")
        .send()
        .await
        .unwrap();
    assert_eq!(rest.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        rest.headers()["content-range"],
        format!("bytes 100-{}/{}", bytes.len() - 1, bytes.len()).as_str()
    );
    assert_eq!(rest.bytes().await.unwrap().as_ref(), &bytes[100..]);
    let ranged = |range: String| {
        let request = client.get(&artifact).header("Range", range);
        async move { request.send().await.unwrap() }
    };
    let middle = ranged("bytes=10-19".into()).await;
    assert_eq!(middle.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(middle.bytes().await.unwrap().as_ref(), &bytes[10..20]);
    let tail = ranged("bytes=-16".into()).await;
    assert_eq!(
        tail.bytes().await.unwrap().as_ref(),
        &bytes[bytes.len() - 16..]
    );
    for (range, expected) in [
        (format!("bytes={}-", bytes.len()), "the Range header"),
        ("bytes=0-1,5-6".to_string(), "one range at a time"),
        ("pages=0-1".to_string(), "the Range header"),
    ] {
        let r = ranged(range.clone()).await;
        assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
        assert_eq!(
            r.headers()["content-range"],
            format!("bytes */{}", bytes.len()).as_str(),
            "{range}"
        );
        let answer: Value = r.json().await.unwrap();
        assert!(message(&answer).contains(expected), "{range}: {answer}");
    }
    // A blob damaged on disk is an error, never served.
    register_firmware(&api, "2.0.0").await;
    let two = image("2.0.0");
    let sha2 = hex(&Manifest::for_image(Version::parse("2.0.0").unwrap(), &two, 0).sha256);
    let blob = dir.path().join("blobs").join(&sha2);
    let mut damaged = std::fs::read(&blob).unwrap();
    damaged[7] ^= 1;
    std::fs::write(&blob, damaged).unwrap();
    let r = client
        .get(format!("{url}/api/v1/artifacts/{sha2}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    // A server failure: the client gets an error id, the log the detail under it; neither a
    // path nor the store's own words reach the client.
    let answer: Value = r.json().await.unwrap();
    let id = answer["error"]["id"].as_str().unwrap().to_string();
    assert!(
        message(&answer).contains(&format!("error id {id}")),
        "{answer}"
    );
    assert!(!message(&answer).contains("damaged"), "{answer}");
    assert!(!message(&answer).contains(&sha2), "{answer}");
    for name in ["00".repeat(32), "../hotswap.db".to_string()] {
        let r = client
            .get(format!("{url}/api/v1/artifacts/{name}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{name}");
    }
    server.stop().await;
}
