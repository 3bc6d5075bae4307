//! Deployments: a dry run returns the plan with device ids; every bad request is refused with
//! its reason.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::http::{assert_refusals, edited, get, message, post};
use crate::support::server::{Server, data_dir};
use crate::support::{registration_json, registry_image, release_key};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_deployment_returns_the_plan_with_device_ids() {
    let dir = data_dir();
    let server = Server::start(&dir).await;
    let client = server.http();
    let api = |path: &str| format!("{}/api/v1/{path}", server.url);
    let image = registry_image();
    let (status, _) = post(
        &client,
        api("firmware"),
        &registration_json(&release_key(), "2.0.0", &image),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, old) = post(
        &client,
        api("firmware"),
        &registration_json(&release_key(), "1.9.0", &image),
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
            "is a `gateway`, and firmware 2.0.0 runs on `sensor-v1`",
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
    // Its id is read back: a refused deployment may have used a number (PostgreSQL's
    // sequences do not roll back).
    let user = &uses["id"];
    assert!(
        message(&answer).contains(&format!(
            "is used by deployment {user}, which is still active"
        )),
        "{answer}"
    );
    let (status, _) = post(
        &client,
        api(&format!("deployments/{user}/cancel")),
        &json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        delete("plugins/hostile/0.1.0").await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    for (path, status, expected) in [
        (
            "deployments/1/explode",
            StatusCode::NOT_FOUND,
            "no such endpoint: POST /api/v1/deployments/1/explode",
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
}
