//! Devices: registered one by one and in batches (all or none), filtered and paged.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::http::{assert_refusals, get, message, post};
use crate::support::server::{Server, data_dir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_are_registered_filtered_and_paged() {
    let dir = data_dir();
    let server = Server::start(&dir).await;
    let client = server.http();
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_are_registered_in_batches_all_or_none() {
    let dir = data_dir();
    // The default body limit (4 MiB): a full batch fits.
    let server = Server::with_body_limit(&dir, 4 << 20).await;
    let client = server.http();
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
}
