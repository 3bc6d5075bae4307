//! The device protocol's refusals: unknown devices and assignments, bad states, bad ranges,
//! damaged blobs.

use hotswap_device_vm::Version;
use hotswap_device_vm::image::Manifest;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::http::{get, message, post};
use crate::support::server::{
    Server, bearer_client, data_dir, register_devices, register_firmware,
};
use crate::support::{hex, image};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_protocol_refuses_bad_input_with_clear_messages() {
    let dir = data_dir();
    let server = Server::start(&dir).await;
    let api = server.client();
    let url = server.url.clone();
    let client = server.http();
    register_firmware(&api, "1.0.0").await;
    let registered = register_devices(&api, 1, "").await;
    // The device routes take the device's own credential.
    let device = bearer_client(&registered[0].1);
    let devices = format!("{url}/api/v1/devices");
    let cases: Vec<(&str, String, Value, StatusCode, &str)> = vec![
        (
            "another device's route",
            format!("{devices}/nope/check-in"),
            json!({}),
            StatusCode::FORBIDDEN,
            "this credential is not device `nope`'s",
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
        let (got, answer) = post(&device, at, &body).await;
        assert_eq!(got, status, "{what}: {answer}");
        assert!(message(&answer).contains(expected), "{what}: {answer}");
    }
    // Nothing to do: no assignment; the check-in is recorded.
    let (status, answer) = post(
        &device,
        format!("{devices}/d-000/check-in"),
        &json!({"firmwareVersion": "1.0.0", "slots": [{"slot": "a", "version": "1.0.0", "state": "active"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer, json!({"assignment": null, "pollSeconds": 30}));
    let shown = get(&client, format!("{devices}/d-000")).await;
    assert_eq!(shown["status"], "online");
    assert_eq!(shown["firmwareVersion"], "1.0.0");
    assert_eq!(shown["slots"][0]["slot"], "a");
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
        let (status, answer) = post(&device, format!("{devices}/d-000/check-in"), &body).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let shown = get(&client, format!("{devices}/d-000")).await;
        assert_eq!(shown["health"]["traps"], health_traps, "{body}: {shown:#}");
        assert_eq!(shown["health"]["version"], version, "{body}: {shown:#}");
        assert_eq!(shown["firmwareVersion"], version, "{body}: {shown:#}");
    }

    // Artifacts: only while an assignment hands them to the device.
    let bytes = image("1.0.0");
    let sha = hex(&Manifest::for_image(Version::parse("1.0.0").unwrap(), &bytes, 0).sha256);
    let artifact = format!("{url}/api/v1/artifacts/{sha}");
    let r = device.get(&artifact).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let answer: Value = r.json().await.unwrap();
    assert!(
        message(&answer).contains("no open assignment hands this artifact to device `d-000`"),
        "{answer}"
    );
    let r = client.get(&artifact).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "nor to an operator");
    let assigned = |version: &'static str| {
        let (client, device, url, devices) = (&client, &device, &url, &devices);
        async move {
            let body = json!({
                "firmwareVersion": version, "deviceModel": "sensor-v1", "targetDevices": ["d-000"],
                "strategy": "direct", "healthConfig": {"pollSeconds": 1},
            });
            let (status, started) = post(client, format!("{url}/api/v1/deployments"), &body).await;
            assert_eq!(status, StatusCode::CREATED, "{started}");
            for _ in 0..600 {
                let (_, answer) =
                    post(device, format!("{devices}/d-000/check-in"), &json!({})).await;
                if answer["assignment"]["version"] == version {
                    return started["id"].as_i64().unwrap();
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            panic!("d-000 was never handed {version}");
        }
    };
    let first = assigned("1.0.0").await;
    // Whole, resumed, and in ranges.
    let whole = device.get(&artifact).send().await.unwrap();
    assert_eq!(whole.status(), StatusCode::OK);
    assert_eq!(whole.bytes().await.unwrap().as_ref(), bytes.as_slice());
    let rest = device
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
        let request = device.get(&artifact).header("Range", range);
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
    let (status, _) = post(
        &client,
        format!("{url}/api/v1/deployments/{first}/cancel"),
        &json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let two = image("2.0.0");
    let sha2 = hex(&Manifest::for_image(Version::parse("2.0.0").unwrap(), &two, 0).sha256);
    let blob = dir.path().join("blobs").join(&sha2);
    let mut damaged = std::fs::read(&blob).unwrap();
    damaged[7] ^= 1;
    std::fs::write(&blob, damaged).unwrap();
    assigned("2.0.0").await;
    let r = device
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
    for (name, status) in [
        ("00".repeat(32), StatusCode::FORBIDDEN),
        ("../hotswap.db".to_string(), StatusCode::NOT_FOUND),
    ] {
        let r = device
            .get(format!("{url}/api/v1/artifacts/{name}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{name}");
    }
    server.stop().await;
}
