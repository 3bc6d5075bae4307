//! The second security pass, one test per finding: each was written against the code before
//! its fix and failed there. Anonymous callers cannot grow the audit log; sign-ins are
//! throttled and passwords can change; a claim is used once and enrolling tells nothing of the
//! fleet; a device's health is bounded; a label key is a name; a credential taken away stops
//! fetching artifacts and is not handed back by a batch.

use std::sync::Arc;

use ed25519_dalek::Signer;
use hotswap_client::{Client, Device};
use hotswap_protocol::{
    AuditQuery, DeviceBatch, DeviceRegistration, Enrollment, IfRegistered, Role, StandingChange,
    TokenClaim, UserRequest,
};
use hotswap_server::ServerLimits;
use hotswap_server::credentials::{Rate, SIGN_INS_PER_NAME};
use hotswap_store::{AUDIT_FIELD_MAX_BYTES, Store, SystemClock};
use serde_json::json;

use crate::support::server::{
    ENROLLMENT_SECRET, Server, data_dir, register_devices, register_firmware,
};

/// A server whose operators and devices are not rate-limited (the tests send far more than
/// they may), with the limits on anonymous callers as shipped.
async fn anonymous_limits_as_shipped(dir: &std::path::Path) -> Server {
    let unlimited = Rate {
        per_second: 1_000_000,
        burst: 1_000_000,
    };
    let limits = ServerLimits {
        token_rate: unlimited,
        device_rate: unlimited,
        max_body_bytes: 1 << 20,
        ..ServerLimits::default()
    };
    Server::with_limits(dir, limits, Arc::new(SystemClock)).await
}

/// The audit log as the database has it, read once the server stopped.
fn audit_after_stop(dir: &std::path::Path) -> Vec<hotswap_protocol::AuditEntry> {
    let store = Store::open_in(
        &crate::support::database::for_dir(dir),
        dir,
        Arc::new(SystemClock),
    )
    .unwrap();
    store
        .audit(&AuditQuery {
            limit: Some(1000),
            ..AuditQuery::default()
        })
        .unwrap()
        .entries
}

// An anonymous request used to write an audit entry of any size (a sign-in's name, a refused
// credential's path), one per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_requests_cannot_grow_the_audit_log() {
    let dir = data_dir();
    let server = anonymous_limits_as_shipped(dir.path()).await;
    let raw = crate::support::http::raw();
    // A sign-in with a 200 KB name: refused as a bad name, before anything is recorded.
    let r = raw
        .post(format!("{}/api/v1/auth/login", server.url))
        .json(&json!({"name": "n".repeat(200_000), "password": "whatever"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    // A refused credential on a 30 KB path.
    let long = format!("{}/api/v1/devices/{}", server.url, "x".repeat(30_000));
    let r = raw
        .get(&long)
        .bearer_auth("hsw_pat_wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // A flood of bad tokens from one address: past the address's burst, 429 with Retry-After.
    let flood = 150;
    let mut limited = None;
    for _ in 0..flood {
        let r = raw
            .get(format!("{}/api/v1/devices", server.url))
            .bearer_auth("hsw_pat_wrong")
            .send()
            .await
            .unwrap();
        if r.status() == 429 {
            limited = r.headers().get("retry-after").cloned();
        }
    }
    assert!(limited.is_some(), "the flood was never limited");
    server.stop().await;

    let entries = audit_after_stop(dir.path());
    for e in &entries {
        for field in [
            Some(&e.actor),
            Some(&e.action),
            e.object.as_ref(),
            e.source.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            assert!(
                field.len() <= AUDIT_FIELD_MAX_BYTES,
                "{} bytes kept",
                field.len()
            );
        }
    }
    let refusals: Vec<_> = entries.iter().filter(|e| e.actor == "anonymous").collect();
    let counted: u32 = refusals.iter().map(|e| e.count).sum();
    assert_eq!(counted, 1 + flood, "every refusal counted: {refusals:#?}");
    // For each route, one entry for the first of each minute and one with the count of the
    // rest (two routes here; a minute may end during the test).
    assert!(
        refusals.len() <= 6,
        "{} entries for one source",
        refusals.len()
    );
}

// Failed sign-ins were never throttled (the OpenAPI promised 429), and a password could not be
// changed, nor a disabled user's tokens revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_ins_are_throttled_and_users_change_their_passwords() {
    let dir = data_dir();
    let server = anonymous_limits_as_shipped(dir.path()).await;
    let admin = server.client();
    for (name, role) in [("ana", Role::Deployer), ("cid", Role::Admin)] {
        admin
            .create_user(&UserRequest {
                name: name.into(),
                role,
                password: "correct horse battery".into(),
            })
            .await
            .unwrap();
    }
    let raw = crate::support::http::raw();
    let login = |name: &str, password: &str| {
        let (raw, url) = (raw.clone(), format!("{}/api/v1/auth/login", server.url));
        let body = json!({"name": name, "password": password});
        async move { raw.post(url).json(&body).send().await.unwrap() }
    };
    for _ in 0..SIGN_INS_PER_NAME {
        assert_eq!(login("ana", "wrong password!!").await.status(), 401);
    }
    let throttled = login("ana", "correct horse battery").await;
    assert_eq!(throttled.status(), 429, "a name past its sign-ins");
    assert!(throttled.headers().contains_key("retry-after"));
    // Another name from the same address is not held by ana's.
    assert_eq!(login("bob", "wrong password!!").await.status(), 401);

    // cid changes their password: the old one stops, the new one works.
    let change = |password: &str, new: &str| {
        let (raw, url) = (raw.clone(), format!("{}/api/v1/auth/password", server.url));
        let body = json!({"name": "cid", "password": password, "newPassword": new});
        async move { raw.post(url).json(&body).send().await.unwrap().status() }
    };
    assert_eq!(change("not the password", "a new long password").await, 401);
    assert_eq!(change("correct horse battery", "short").await, 400);
    assert_eq!(
        change("correct horse battery", "a new long password").await,
        204
    );
    assert_eq!(login("cid", "correct horse battery").await.status(), 401);
    let session: hotswap_protocol::Session = login("cid", "a new long password")
        .await
        .json()
        .await
        .unwrap();

    // A token cid made stops when cid is disabled with its tokens.
    let cid = Client::new(&server.url).unwrap().with_token(&session.token);
    let made = cid
        .create_token(&hotswap_protocol::TokenRequest {
            name: "cids-script".into(),
            role: Role::Viewer,
            expires_in_days: None,
        })
        .await
        .unwrap();
    let script = Client::new(&server.url).unwrap().with_token(&made.token);
    script.deployments().await.unwrap();
    let r = raw
        .post(format!(
            "{}/api/v1/users/cid/disable?revokeTokens=true",
            server.url
        ))
        .bearer_auth(&server.admin_token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(script.deployments().await.unwrap_err().status(), Some(401));
    server.stop().await;
}

// A captured claim used to give a new credential each time it was replayed within 300 s; a
// device enrolling under a registered id could not be told from the real one; its labels and
// groups were taken from it; an unknown id answered otherwise than a known one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_is_used_once_and_enrolling_tells_nothing_of_the_fleet() {
    let dir = data_dir();
    let server = anonymous_limits_as_shipped(dir.path()).await;
    let admin = server.client();
    let raw = crate::support::http::raw();
    let key = ed25519_dalek::SigningKey::from_bytes(&[11; 32]);
    let enrollment = |id: &str, key: &ed25519_dalek::SigningKey| {
        let mut labels = std::collections::BTreeMap::new();
        labels.insert("env".to_string(), "production".to_string());
        Enrollment {
            device: DeviceRegistration {
                device_id: id.into(),
                device_model: "sensor-v1".into(),
                firmware_version: "1.0.0".into(),
                labels,
                groups: vec!["canary".into()],
                ..Default::default()
            },
            public_key: hex::encode(key.verifying_key().as_bytes()),
            enrollment_secret: ENROLLMENT_SECRET.into(),
        }
    };
    let enroll = |body: Enrollment| {
        let (raw, url) = (raw.clone(), format!("{}/api/v1/enroll", server.url));
        async move {
            let r = raw.post(url).json(&body).send().await.unwrap();
            (
                r.status().as_u16(),
                r.json::<serde_json::Value>().await.unwrap(),
            )
        }
    };
    let (status, new) = enroll(enrollment("e-7", &key)).await;
    assert_eq!(status, 202, "{new}");
    assert_eq!(
        new["labels"],
        json!({}),
        "labels are the operator's to give"
    );
    assert_eq!(new["groups"], json!([]));
    let fingerprint = new["keyFingerprint"].as_str().unwrap().to_string();
    assert!(fingerprint.starts_with("sha256:"), "{fingerprint}");

    // A known id enrolled with another key answers as a new one would, and changes nothing.
    let (registered, _) = register_devices(&admin, 1, "1.0.0").await.remove(0);
    let impostor = ed25519_dalek::SigningKey::from_bytes(&[12; 32]);
    let (status, answer) = enroll(enrollment(&registered, &impostor)).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["status"], "pending");
    let real = admin.device(&registered).await.unwrap().device;
    assert_eq!(real.status, hotswap_protocol::DeviceStatus::Registered);
    assert_eq!(real.key_fingerprint, None);

    // Accepting names the key expected: another fingerprint is refused.
    let wrong = admin
        .set_standing_of_key("e-7", StandingChange::Accept, Some("sha256:00"))
        .await
        .unwrap_err();
    assert_eq!(wrong.status(), Some(409), "{wrong}");
    admin
        .set_standing_of_key("e-7", StandingChange::Accept, Some(&fingerprint))
        .await
        .unwrap();

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claim = |id: &str, key: &ed25519_dalek::SigningKey, at: i64| TokenClaim {
        device_id: id.into(),
        timestamp: at,
        signature: hex::encode(key.sign(&TokenClaim::signed_bytes(id, at)).to_bytes()),
    };
    let post_claim = |c: TokenClaim| {
        let (raw, url) = (raw.clone(), format!("{}/api/v1/enroll/token", server.url));
        async move {
            let r = raw.post(url).json(&c).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (status, first) = post_claim(claim("e-7", &key, now)).await;
    assert_eq!(status, 200, "{first}");
    // The same claim again: refused, and the credential it gave still works.
    let (status, replay) = post_claim(claim("e-7", &key, now)).await;
    assert_eq!(status, 401, "{replay}");
    assert!(replay.contains("used already"), "{replay}");
    let token: hotswap_protocol::DeviceToken = serde_json::from_str(&first).unwrap();
    Client::new(&server.url)
        .unwrap()
        .check_in(
            Device {
                id: "e-7",
                token: &token.token,
            },
            &Default::default(),
            0,
        )
        .await
        .unwrap();
    // An unknown id answers as a wrong key does.
    let (unknown, unknown_body) = post_claim(claim("nobody-here", &key, now)).await;
    let (wrong_key, wrong_body) = post_claim(claim("e-7", &impostor, now + 1)).await;
    assert_eq!((unknown, wrong_key), (401, 401));
    let shape = |body: &str| body.replace("nobody-here", "ID").replace("e-7", "ID");
    assert_eq!(shape(&unknown_body), shape(&wrong_body));
    // Enrollments and claims are on record.
    let audit = admin
        .audit(&AuditQuery {
            actor: Some("device:e-7".into()),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    let actions: Vec<&str> = audit.entries.iter().map(|e| e.action.as_str()).collect();
    assert!(
        actions.contains(&"enroll") && actions.contains(&"credential claimed"),
        "{actions:?}"
    );
    server.stop().await;
}

// A device's health metrics (about 4 MiB of them were accepted) were kept whole and copied into
// every decision of its wave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_devices_health_is_kept_bounded() {
    use hotswap_protocol::device_protocol::MAX_HEALTH_METRICS;
    let dir = data_dir();
    let server = anonymous_limits_as_shipped(dir.path()).await;
    let admin = server.client();
    let (id, token) = register_devices(&admin, 1, "1.0.0").await.remove(0);
    let metrics: serde_json::Map<String, serde_json::Value> = (0..10_000)
        .map(|i| (format!("metric-{i:05}"), json!(i)))
        .collect();
    let r = crate::support::http::raw()
        .post(format!("{}/api/v1/devices/{id}/check-in", server.url))
        .bearer_auth(&token)
        .json(&json!({"firmwareVersion": "1.0.0", "health": {"healthy": true, "metrics": metrics}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the check-in is taken, not refused");
    let health = admin.device(&id).await.unwrap().inventory.health.unwrap();
    let kept = health["metrics"].as_object().unwrap().len();
    assert_eq!(kept, MAX_HEALTH_METRICS, "{health}");
    server.stop().await;
}

// A label filter key with a quote was stored in a group and made every later deployment fail
// on SQLite (the key went into a JSON path). Keys are names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_label_key_that_is_not_a_name_is_refused() {
    let dir = data_dir();
    let server = Server::start(&dir).await;
    let raw = crate::support::http::raw();
    let r = raw
        .post(format!("{}/api/v1/device-groups", server.url))
        .bearer_auth(&server.admin_token)
        .json(&json!({"name": "quoted", "filter": {"label": "a\"b=1"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = raw
        .get(format!("{}/api/v1/devices?label=a%22b%3D1", server.url))
        .bearer_auth(&server.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    server.stop().await;
}

// A batch with `ifRegistered: reissue` used to give a working credential to a decommissioned
// (or rejected, or pending) device, undoing the operator's decision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_reissues_no_credential_to_a_device_out_of_the_fleet() {
    let dir = data_dir();
    let server = Server::start(&dir).await;
    let admin = server.client();
    let (id, _) = register_devices(&admin, 1, "1.0.0").await.remove(0);
    admin
        .set_standing(&id, StandingChange::Decommission)
        .await
        .unwrap();
    let answer = admin
        .register_devices(&DeviceBatch {
            devices: vec![DeviceRegistration {
                device_id: id.clone(),
                device_model: "sensor-v1".into(),
                firmware_version: "1.0.0".into(),
                ..Default::default()
            }],
            if_registered: IfRegistered::Reissue,
        })
        .await
        .unwrap();
    assert!(answer.tokens.is_empty(), "{answer:?}");
    assert_eq!(answer.skipped, [id]);
    server.stop().await;
}

// After a restart the artifact route knows a credential by its hash alone; decommissioning the
// device did not forget it there, and the store was asked only whether the device had an open
// assignment, not whether the credential was still its.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_taken_away_fetches_no_artifact() {
    let dir = data_dir();
    let server = Server::start(&dir).await;
    let admin = server.client();
    register_firmware(&admin, "1.0.0").await;
    register_firmware(&admin, "2.0.0").await;
    let (id, token) = register_devices(&admin, 1, "1.0.0").await.remove(0);
    admin
        .create_deployment(&hotswap_protocol::DeploymentRequest {
            firmware_version: "2.0.0".into(),
            device_model: "sensor-v1".into(),
            target_devices: Some(vec![id.clone()]),
            strategy: "direct".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let me = Device {
        id: &id,
        token: &token,
    };
    let plain = Client::new(&server.url).unwrap();
    let mut url = None;
    for _ in 0..100 {
        let answer = plain.check_in(me, &Default::default(), 0).await.unwrap();
        if let Some(a) = answer.assignment {
            url = Some(a.url);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let url = url.expect("an assignment");
    server.stop().await;
    // Restarted: the first download makes the artifact route remember the credential.
    let server = Server::start(&dir).await;
    let plain = Client::new(&server.url).unwrap();
    plain.artifact(me, &url, 0).await.unwrap();
    server
        .client()
        .set_standing(&id, StandingChange::Decommission)
        .await
        .unwrap();
    let refused = plain.artifact(me, &url, 0).await.unwrap_err();
    assert!(
        matches!(refused.status(), Some(401 | 403)),
        "a decommissioned device's old credential fetched its artifact: {refused}"
    );
    server.stop().await;
}
