//! The firmware registry over real HTTP on loopback: a real server, a real client. Happy paths,
//! then every bad input with its status and message, then a restart on the same data directory.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use base64::Engine as _;
use hotswap::api::ServerLimits;
use hotswap::server::{ServerConfig, serve, state};
use hotswap_device_vm::Version;
use hotswap_device_vm::sim::ReleaseKey;
use reqwest::StatusCode;
use serde_json::{Value, json};

pub(crate) fn release_key() -> ReleaseKey {
    ReleaseKey::from_seed([7; 32])
}

pub(crate) fn data_dir() -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "hotswap-api-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A running server; stops when dropped.
pub(crate) struct Server {
    pub(crate) url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    pub(crate) async fn start(dir: &std::path::Path) -> Server {
        Server::with_body_limit(dir, 256 << 10).await
    }

    /// A server whose request bodies may be up to `max_body_bytes`.
    pub(crate) async fn with_body_limit(dir: &std::path::Path, max_body_bytes: usize) -> Server {
        let config = ServerConfig {
            data_dir: dir.to_path_buf(),
            trusted_keys: vec![release_key().trusted()],
            limits: ServerLimits {
                max_body_bytes,
                max_firmware_bytes: 64 << 10,
            },
            tick: std::time::Duration::from_millis(50),
        };
        let state = state(&config).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            serve(listener, state, async {
                let _ = rx.await;
            })
            .await
            .unwrap()
        });
        Server {
            url,
            stop: Some(tx),
            task,
        }
    }

    pub(crate) async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let _ = (&mut self.task).await;
    }
}

/// A registration of `image` as `version`, signed by `key`.
pub(crate) fn registration(key: &ReleaseKey, version: &str, image: &[u8]) -> Value {
    let v = Version::parse(version).unwrap();
    let release = key.release(v, image, 0);
    json!({
        "version": version,
        "deviceModel": "sensor-v1",
        "releaseNotes": "bug fixes",
        "checksum": format!("sha256:{}", hex(&release.manifest.sha256)),
        "binary": base64::engine::general_purpose::STANDARD.encode(image),
        "signature": hex(&release.signature),
    })
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) async fn post(
    client: &reqwest::Client,
    url: String,
    body: &Value,
) -> (StatusCode, Value) {
    let response = client.post(url).json(body).send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

/// Posts each case and checks its status and that its JSON error message contains the expected
/// piece: `(what, body, status, piece of the message)`.
async fn assert_refusals(
    client: &reqwest::Client,
    url: &str,
    cases: Vec<(&str, Value, StatusCode, &str)>,
) {
    for (what, body, status, expected) in cases {
        let (got, answer) = post(client, url.to_string(), &body).await;
        assert_eq!(got, status, "{what}: {answer}");
        assert!(
            message(&answer).contains(expected),
            "{what}: {:?} does not contain {expected:?}",
            message(&answer)
        );
    }
}

/// A copy of `base` changed by `f`: one bad field at a time in the tables of refusals.
fn edited(base: &Value, f: &dyn Fn(&mut Value)) -> Value {
    let mut body = base.clone();
    f(&mut body);
    body
}

pub(crate) async fn get(client: &reqwest::Client, url: String) -> Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

pub(crate) fn message(body: &Value) -> &str {
    body["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("not a JSON error: {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firmware_is_registered_listed_and_deprecated() {
    let dir = data_dir();
    let server = Server::start(&dir).await;
    let client = reqwest::Client::new();
    let image = hotswap_agents_image();

    let (status, body) = post(
        &client,
        format!("{}/api/v1/firmware", server.url),
        &registration(&release_key(), "1.0.0", &image),
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
        &registration(&release_key(), "1.1.0", &image),
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
    let _ = std::fs::remove_dir_all(&dir);
}

pub(crate) fn hotswap_agents_image() -> Vec<u8> {
    // Any bytes will do for the registry; it checks checksums and signatures, not WebAssembly.
    (0..4096u32).map(|i| (i * 7 % 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_registrations_get_the_right_status_and_a_clear_message() {
    let dir = data_dir();
    let server = Server::start(&dir).await;
    let client = reqwest::Client::new();
    let url = format!("{}/api/v1/firmware", server.url);
    let image = hotswap_agents_image();
    let good = registration(&release_key(), "2.0.0", &image);

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
                let other = registration(&release_key(), "2.0.1", &image);
                b["signature"] = other["signature"].clone();
            }),
            StatusCode::BAD_REQUEST,
            "does not verify against any of the server's 1 trusted release keys",
        ),
        (
            "unknown key",
            registration(&ReleaseKey::from_seed([9; 32]), "2.0.0", &image),
            StatusCode::BAD_REQUEST,
            "does not verify",
        ),
        (
            "binary over the limit",
            registration(&release_key(), "2.0.0", &vec![1u8; 100 << 10]),
            StatusCode::PAYLOAD_TOO_LARGE,
            "the limit is 65536",
        ),
        (
            "body over the limit",
            registration(&release_key(), "2.0.0", &vec![1u8; 300 << 10]),
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
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_are_registered_filtered_and_paged() {
    let dir = data_dir();
    let server = Server::start(&dir).await;
    let client = reqwest::Client::new();
    let url = format!("{}/api/v1/devices", server.url);
    let regions = ["eu-west", "us-east", "ap-south"];
    for i in 0..30 {
        let body = json!({
            "deviceId": format!("dev-{i:03}"),
            "deviceModel": if i % 3 == 0 { "gateway" } else { "sensor-v1" },
            "region": regions[i % 3],
            "labels": {"site": if i < 10 { "lyon" } else { "oslo" }},
            "groups": if i % 2 == 0 { vec!["even", "all"] } else { vec!["all"] },
            "firmwareVersion": "1.0.0",
        });
        let (status, answer) = post(&client, url.clone(), &body).await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
    }
    let get = |query: &str| {
        let client = client.clone();
        let url = format!("{url}?{query}");
        async move {
            let response = client.get(url).send().await.unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        }
    };
    let count = |v: &Value| v["devices"].as_array().unwrap().len();
    assert_eq!(count(&get("deviceModel=gateway").await.1), 10);
    assert_eq!(count(&get("region=us-east").await.1), 10);
    assert_eq!(count(&get("group=even").await.1), 15);
    assert_eq!(count(&get("label=site=lyon").await.1), 10);
    assert_eq!(
        count(
            &get("label=site=lyon&region=eu-west&deviceModel=gateway")
                .await
                .1
        ),
        4
    );
    assert_eq!(count(&get("firmwareVersion=2.0.0").await.1), 0);

    // Pages of 7 cover every device once, in order.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let query = match &after {
            Some(a) => format!("limit=7&after={a}"),
            None => "limit=7".to_string(),
        };
        let (status, page) = get(&query).await;
        assert_eq!(status, StatusCode::OK);
        seen.extend(
            page["devices"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["deviceId"].as_str().unwrap().to_string()),
        );
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_string()),
            None => break,
        }
    }
    let expected: Vec<String> = (0..30).map(|i| format!("dev-{i:03}")).collect();
    assert_eq!(seen, expected);

    let shown: Value = client
        .get(format!("{url}/dev-004"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["labels"]["site"], "lyon");
    assert_eq!(shown["groups"], json!(["even", "all"]));
    assert_eq!(shown["status"], "registered");

    let bad: Vec<(&str, Value, StatusCode, &str)> = vec![
        (
            "duplicate",
            json!({"deviceId": "dev-001", "deviceModel": "sensor-v1"}),
            StatusCode::CONFLICT,
            "already registered",
        ),
        (
            "bad id",
            json!({"deviceId": "dev 1/..", "deviceModel": "sensor-v1"}),
            StatusCode::BAD_REQUEST,
            "`deviceId` must be 1 to 128",
        ),
        (
            "no model",
            json!({"deviceId": "dev-x"}),
            StatusCode::BAD_REQUEST,
            "missing field `deviceModel`",
        ),
        (
            "unknown field",
            json!({"deviceId": "dev-x", "deviceModel": "m", "site": "lyon"}),
            StatusCode::BAD_REQUEST,
            "unknown field `site`",
        ),
        (
            "bad version",
            json!({"deviceId": "dev-x", "deviceModel": "m", "firmwareVersion": "one"}),
            StatusCode::BAD_REQUEST,
            "`firmwareVersion` must be semver",
        ),
    ];
    assert_refusals(&client, &url, bad).await;
    for (query, expected) in [
        ("limit=0", "`limit` must be from 1 to 1000"),
        ("limit=5000", "found 5000"),
        ("label=site", "`label` must be `key=value`"),
    ] {
        let (status, answer) = get(query).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert!(message(&answer).contains(expected), "{query}: {answer}");
    }
    let response = client.get(format!("{url}/nope")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_are_registered_in_batches_all_or_none() {
    let dir = data_dir();
    // The default body limit (4 MiB): a full batch fits.
    let server = Server::with_body_limit(&dir, 4 << 20).await;
    let client = reqwest::Client::new();
    let url = format!("{}/api/v1/devices/batch", server.url);
    let device = |i: usize| json!({"deviceId": format!("b-{i:05}"), "deviceModel": "sensor-v1", "region": "eu-west", "firmwareVersion": "1.0.0"});
    let batch =
        |range: std::ops::Range<usize>| json!({"devices": range.map(device).collect::<Vec<_>>()});

    let (status, answer) = post(&client, url.clone(), &batch(0..3000)).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(answer["created"], 3000);
    assert_eq!(answer["skipped"], json!([]));
    let page = get(
        &client,
        format!("{}/api/v1/devices?limit=1000&region=eu-west", server.url),
    )
    .await;
    assert_eq!(page["devices"].as_array().unwrap().len(), 1000);

    // Overlapping the first batch: refused whole, naming the registered ones; nothing added.
    let (status, answer) = post(&client, url.clone(), &batch(2990..3010)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert!(
        message(&answer).contains("10 of the devices are already registered (`b-02990`"),
        "{answer}"
    );
    let missing = client
        .get(format!("{}/api/v1/devices/b-03005", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    // Asked to skip them: the others are registered.
    let mut skipping = batch(2990..3010);
    skipping["ifRegistered"] = json!("skip");
    let (status, answer) = post(&client, url.clone(), &skipping).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(answer["created"], 10);
    assert_eq!(answer["skipped"].as_array().unwrap().len(), 10);

    let mut twice = batch(5000..5003);
    twice["devices"][2]["deviceId"] = json!("b-05000");
    let mut bad_one = batch(6000..6003);
    bad_one["devices"][1]["firmwareVersion"] = json!("one");
    let refusals: Vec<(&str, Value, StatusCode, &str)> = vec![
        (
            "empty",
            json!({"devices": []}),
            StatusCode::BAD_REQUEST,
            "`devices` is empty",
        ),
        (
            "too many",
            batch(10_000..20_001),
            StatusCode::BAD_REQUEST,
            "`devices` holds 10001 devices, the limit is 10000 per batch",
        ),
        (
            "twice",
            twice,
            StatusCode::BAD_REQUEST,
            "devices[2]: `b-05000` appears twice in the batch",
        ),
        (
            "bad device",
            bad_one,
            StatusCode::BAD_REQUEST,
            "devices[1]: `firmwareVersion` must be semver",
        ),
        (
            "bad policy",
            json!({"devices": [device(7000)], "ifRegistered": "overwrite"}),
            StatusCode::BAD_REQUEST,
            "unknown variant `overwrite`",
        ),
        (
            "reserved id",
            json!({"devices": [{"deviceId": "batch", "deviceModel": "m"}]}),
            StatusCode::BAD_REQUEST,
            "`deviceId` cannot be `batch`",
        ),
    ];
    assert_refusals(&client, &url, refusals).await;
    let missing = client
        .get(format!("{}/api/v1/devices/b-05000", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        missing.status(),
        StatusCode::NOT_FOUND,
        "a refused batch adds nothing"
    );
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_are_uploaded_checked_listed_and_deleted() {
    let dir = data_dir();
    let server = Server::start(&dir).await;
    let client = reqwest::Client::new();
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
            hotswap::plugin::BUILTINS[5].bytes,
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
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_deployment_returns_the_plan_with_device_ids() {
    let dir = data_dir();
    let server = Server::start(&dir).await;
    let client = reqwest::Client::new();
    let api = |path: &str| format!("{}/api/v1/{path}", server.url);
    let image = hotswap_agents_image();
    let (status, _) = post(
        &client,
        api("firmware"),
        &registration(&release_key(), "2.0.0", &image),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, old) = post(
        &client,
        api("firmware"),
        &registration(&release_key(), "1.9.0", &image),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = post(
        &client,
        format!("{}/{}/deprecate", api("firmware"), old["id"]),
        &json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let regions = ["eu-west", "us-east", "ap-south"];
    for i in 0..100 {
        let body = json!({"deviceId": format!("s-{i:03}"), "deviceModel": "sensor-v1", "region": regions[i % 3], "groups": ["all"]});
        assert_eq!(
            post(&client, api("devices"), &body).await.0,
            StatusCode::CREATED
        );
    }
    let gateway = json!({"deviceId": "g-1", "deviceModel": "gateway"});
    assert_eq!(
        post(&client, api("devices"), &gateway).await.0,
        StatusCode::CREATED
    );
    let upload = client
        .post(api("plugins"))
        .body(crate::fixtures::HOSTILE)
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), StatusCode::CREATED);

    let dry = format!("{}?dryRun=true", api("deployments"));
    let deployment = |strategy: &str, config: Value| json!({"firmwareVersion": "2.0.0", "deviceModel": "sensor-v1", "targetFilter": {}, "strategy": strategy, "config": config});
    let (status, plan) = post(
        &client,
        dry.clone(),
        &deployment(
            "Canary",
            json!({"initialPercentage": 10, "increments": [50, 100]}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{plan}");
    assert_eq!(plan["strategy"], "canary@0.1.0");
    assert_eq!(plan["healthPolicy"], "default@0.1.0");
    assert_eq!(plan["targets"], 100);
    let waves = plan["waves"].as_array().unwrap();
    let sizes: Vec<usize> = waves
        .iter()
        .map(|w| w["devices"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [10, 40, 50]);
    let mut ids: Vec<&str> = waves
        .iter()
        .flat_map(|w| {
            w["devices"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_str().unwrap())
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 100, "every target exactly once");
    assert!(!ids.contains(&"g-1"));

    let direct = json!({"firmwareVersion": "2.0.0", "deviceModel": "sensor-v1", "targetDevices": ["s-001", "s-002"], "strategy": "direct"});
    let (status, plan) = post(&client, dry.clone(), &direct).await;
    assert_eq!(status, StatusCode::OK, "{plan}");
    assert_eq!(plan["waves"][0]["devices"], json!(["s-001", "s-002"]));
    for name in ["hostile", "hostile@0.1.0"] {
        let (status, plan) = post(&client, dry.clone(), &deployment(name, json!({}))).await;
        assert_eq!(status, StatusCode::OK, "{name}: {plan}");
        assert_eq!(plan["strategy"], "hostile@0.1.0");
    }

    let base = deployment("canary", json!({}));
    let with = |f: &dyn Fn(&mut Value)| edited(&base, f);
    let cases: Vec<(&str, Value, StatusCode, &str)> = vec![
        (
            "unknown firmware",
            with(&|b| b["firmwareVersion"] = json!("9.9.9")),
            StatusCode::NOT_FOUND,
            "unknown firmware 9.9.9",
        ),
        (
            "deprecated",
            with(&|b| b["firmwareVersion"] = json!("1.9.0")),
            StatusCode::BAD_REQUEST,
            "is deprecated",
        ),
        (
            "no targets",
            with(&|b| {
                b.as_object_mut().unwrap().remove("targetFilter");
            }),
            StatusCode::BAD_REQUEST,
            "`targetDevices`, `targetFilter` or `targetGroup` is required",
        ),
        (
            "unknown device",
            with(&|b| {
                b.as_object_mut().unwrap().remove("targetFilter");
                b["targetDevices"] = json!(["s-001", "nope"]);
            }),
            StatusCode::BAD_REQUEST,
            "names `nope`, which is not registered",
        ),
        (
            "other model",
            with(&|b| {
                b.as_object_mut().unwrap().remove("targetFilter");
                b["targetDevices"] = json!(["g-1"]);
            }),
            StatusCode::BAD_REQUEST,
            "is a `gateway`, not a `sensor-v1`",
        ),
        (
            "empty filter match",
            with(&|b| b["targetFilter"] = json!({"region": "mars"})),
            StatusCode::BAD_REQUEST,
            "match no registered device",
        ),
        (
            "unknown strategy",
            with(&|b| b["strategy"] = json!("Linear")),
            StatusCode::BAD_REQUEST,
            "unknown strategy `Linear`",
        ),
        (
            "invalid config",
            with(&|b| b["config"] = json!({"initialPercentage": 0})),
            StatusCode::BAD_REQUEST,
            "`initialPercentage` must be above 0",
        ),
        (
            "config not an object",
            with(&|b| b["config"] = json!([1])),
            StatusCode::BAD_REQUEST,
            "`config` must be a JSON object",
        ),
        (
            "invalid health config",
            with(&|b| b["healthConfig"] = json!({"failureThresholdPercent": 400})),
            StatusCode::BAD_REQUEST,
            "invalid `healthConfig`",
        ),
        (
            "unknown policy",
            with(&|b| b["healthPolicy"] = json!("strict")),
            StatusCode::BAD_REQUEST,
            "unknown health-policy `strict`: not a built-in (default)",
        ),
        (
            "timeout out of range",
            with(&|b| b["deviceTimeoutSeconds"] = json!(0)),
            StatusCode::BAD_REQUEST,
            "`deviceTimeoutSeconds` must be from 1 to 86400, found 0",
        ),
        (
            "too many attempts",
            with(&|b| b["maxAttempts"] = json!(11)),
            StatusCode::BAD_REQUEST,
            "`maxAttempts` must be from 1 to 10, found 11",
        ),
        (
            "unknown field",
            with(&|b| b["targets"] = json!([])),
            StatusCode::BAD_REQUEST,
            "unknown field `targets`",
        ),
    ];
    assert_refusals(&client, &dry, cases).await;
    assert_eq!(
        get(&client, api("deployments")).await,
        json!([]),
        "a dry run starts nothing"
    );

    // Without `dryRun` the same request starts the deployment; its devices are then taken.
    let (status, started) = post(&client, api("deployments"), &direct).await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    assert_eq!(started["state"], "running");
    assert_eq!(started["strategy"], "direct@0.1.0");
    assert_eq!(started["waveStatus"][0]["devices"], 2);
    let overlapping = edited(&direct, &|b| b["targetDevices"] = json!(["s-003", "s-002"]));
    assert_refusals(
        &client,
        &api("deployments"),
        vec![(
            "overlapping deployment",
            overlapping.clone(),
            StatusCode::CONFLICT,
            "device `s-002` is in deployment 1, which is still active",
        )],
    )
    .await;
    assert_eq!(
        get(&client, api("deployments"))
            .await
            .as_array()
            .unwrap()
            .len(),
        1,
        "the refused deployment left nothing behind"
    );
    let (status, cancelled) = post(&client, api("deployments/1/cancel"), &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["state"], "cancelled");
    let (status, _) = post(&client, api("deployments"), &overlapping).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "a cancelled deployment frees its devices"
    );
    assert_refusals(
        &client,
        &api("deployments/1/resume"),
        vec![(
            "resume a cancelled deployment",
            json!({}),
            StatusCode::CONFLICT,
            "deployment 1 is cancelled, so it cannot become running",
        )],
    )
    .await;
    // An uploaded plugin cannot be deleted while an active deployment uses it.
    let hostile = json!({"firmwareVersion": "2.0.0", "deviceModel": "sensor-v1", "targetDevices": ["s-050"], "strategy": "hostile"});
    let (status, uses) = post(&client, api("deployments"), &hostile).await;
    assert_eq!(status, StatusCode::CREATED, "{uses}");
    let delete = |path: &str| client.delete(api(path)).send();
    let refused = delete("plugins/hostile/0.1.0").await.unwrap();
    assert_eq!(refused.status(), StatusCode::CONFLICT);
    let answer: Value = refused.json().await.unwrap();
    assert!(
        message(&answer).contains("is used by deployment 3, which is still active"),
        "{answer}"
    );
    let (status, _) = post(&client, api("deployments/3/cancel"), &json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        delete("plugins/hostile/0.1.0").await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    for (path, status, expected) in [
        (
            "deployments/1/explode",
            StatusCode::NOT_FOUND,
            "no action `explode`",
        ),
        (
            "deployments/99/pause",
            StatusCode::NOT_FOUND,
            "no deployment 99",
        ),
        (
            "deployments/x/pause",
            StatusCode::BAD_REQUEST,
            "a deployment id is a number",
        ),
    ] {
        let (got, answer) = post(&client, api(path), &json!({})).await;
        assert_eq!(got, status, "{path}: {answer}");
        assert!(message(&answer).contains(expected), "{path}: {answer}");
    }
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_by_route_and_status_and_registry_sizes() {
    let dir = data_dir();
    let server = Server::start(&dir).await;
    let client = reqwest::Client::new();
    let url = format!("{}/api/v1/firmware", server.url);
    let image = hotswap_agents_image();
    assert_eq!(
        post(
            &client,
            url.clone(),
            &registration(&release_key(), "1.0.0", &image)
        )
        .await
        .0,
        StatusCode::CREATED
    );
    assert_eq!(
        post(
            &client,
            url.clone(),
            &registration(&release_key(), "1.0.0", &image)
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
    let _ = std::fs::remove_dir_all(&dir);
}
