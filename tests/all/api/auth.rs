//! Who may do what: every route of the router walked with no credential, a malformed one, an
//! unknown one, an expired one, a revoked one, a device's, and a token of each role; the
//! statuses asserted against the route's rule and the role's permissions. Tokens made, listed
//! (never with their secret) and revoked; the audit log of it all.

use hotswap_client::{Client, Device};
use hotswap_protocol::auth::API_TOKEN_PREFIX;
use hotswap_protocol::{AuditQuery, Role, TokenRequest};
use hotswap_server::{ROUTES, Rule};
use hotswap_store::ManualClock;
use strum::VariantArray;

use crate::support::server::{Server, data_dir, register_devices};

/// A route's template with its parameters filled so that no permitted request changes
/// anything that matters (ids that do not exist, the one device's own id).
fn concrete(path: &str) -> String {
    // The device's own routes get its id; the operator's actions on devices a device that is
    // not there, so the walk rejects no one.
    let own = path.starts_with("/api/v1/devices/")
        && !["accept", "reject", "decommission"]
            .iter()
            .any(|a| path.ends_with(a));
    path.replace("{id}", if own { "d-000" } else { "999" })
        .replace("{name}", "nothing")
        .replace("{version}", "0.0.0")
        .replace("{sha256}", &"00".repeat(32))
        .replace("{action}", "pause")
}

async fn status(url: &str, method: &reqwest::Method, path: &str, bearer: Option<&str>) -> u16 {
    let mut request = crate::support::http::raw().request(method.clone(), format!("{url}{path}"));
    if let Some(b) = bearer {
        request = request.header("Authorization", b);
    }
    if *method != reqwest::Method::GET {
        request = request.json(&serde_json::json!({}));
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_held_to_its_rule_for_every_kind_of_credential() {
    let dir = data_dir();
    let clock = ManualClock::new();
    let server = Server::with_clock(&dir, clock.clone()).await;
    let admin = server.client();
    let url = server.url.clone();
    let device = register_devices(&admin, 1, "1.0.0").await.remove(0).1;
    let token = |role: Role, days: Option<u32>| {
        let admin = admin.clone();
        async move {
            admin
                .create_token(&TokenRequest {
                    name: format!("{role}-{}", days.unwrap_or(0)),
                    role,
                    expires_in_days: days,
                })
                .await
                .unwrap()
        }
    };
    // What each role may do, written out here rather than read from the server's table, so a
    // role that grows a permission fails this test.
    use hotswap_protocol::Permission::*;
    let granted: [(Role, &[hotswap_protocol::Permission]); 5] = [
        (Role::Admin, hotswap_protocol::Permission::VARIANTS),
        (Role::ReleaseManager, &[Read, Release]),
        (Role::Deployer, &[Read, CreateDeployment, HandleDeployment]),
        (Role::Approver, &[Read, ApproveDeployment]),
        (Role::Viewer, &[Read]),
    ];
    assert!(hotswap_protocol::Permission::VARIANTS.contains(&ManageUsers));
    for (role, permissions) in granted {
        assert_eq!(role.permissions(), permissions, "{role}");
    }
    let allows = |role: Role, p| granted.iter().any(|(r, ps)| *r == role && ps.contains(&p));
    let mut roles = Vec::new();
    for role in Role::VARIANTS {
        roles.push((*role, token(*role, None).await.token));
    }
    let expiring = token(Role::Admin, Some(1)).await.token;
    let revoked = token(Role::Admin, None).await;
    admin.revoke_token(revoked.info.id).await.unwrap();
    // A day and a bit later: the one-day token has expired.
    clock.advance_ms(25 * 3600 * 1000);

    let unknown = format!("Bearer {API_TOKEN_PREFIX}{}", "ab".repeat(32));
    let mut walked = 0;
    for route in ROUTES {
        let method = reqwest::Method::from_bytes(route.method.as_str().as_bytes()).unwrap();
        let path = concrete(route.path);
        let what = format!("{} {}", route.method, route.path);
        let got = |bearer: Option<String>| {
            let (url, method, path) = (url.clone(), method.clone(), path.clone());
            async move { status(&url, &method, &path, bearer.as_deref()).await }
        };
        let refused = |s: u16| s == 401 || s == 403;
        if matches!(route.rule, Rule::Open | Rule::Login | Rule::Enroll) {
            assert!(!refused(got(None).await), "{what} is open");
            walked += 1;
            continue;
        }
        assert_eq!(got(None).await, 401, "{what} without a credential");
        assert_eq!(
            got(Some("Basic YWRtaW46YWRtaW4=".into())).await,
            401,
            "{what} malformed"
        );
        assert_eq!(
            got(Some("Bearer nonsense".into())).await,
            401,
            "{what} not a token"
        );
        assert_eq!(
            got(Some(unknown.clone())).await,
            401,
            "{what} unknown token"
        );
        assert_eq!(
            got(Some(format!("Bearer {expiring}"))).await,
            401,
            "{what} expired"
        );
        assert_eq!(
            got(Some(format!("Bearer {}", revoked.token))).await,
            401,
            "{what} revoked"
        );
        let as_device = got(Some(format!("Bearer {device}"))).await;
        for (role, secret) in &roles {
            let s = got(Some(format!("Bearer {secret}"))).await;
            match route.rule {
                Rule::Operator(p) if allows(*role, p) => {
                    assert!(!refused(s), "{what}: {role} has {p}, got {s}")
                }
                _ => assert_eq!(s, 403, "{what}: {role} may not"),
            }
        }
        match route.rule {
            Rule::Operator(_) => assert_eq!(as_device, 403, "{what}: not with a device token"),
            // The device's own route: the credential is good.
            Rule::Device => assert!(
                !refused(as_device),
                "{what}: the device's own, got {as_device}"
            ),
            // No assignment hands it this artifact.
            Rule::Artifact => assert_eq!(as_device, 403, "{what}: not assigned"),
            Rule::Open | Rule::Login | Rule::Enroll => {}
        }
        walked += 1;
    }
    assert_eq!(walked, ROUTES.len());

    // Another device's routes are closed to this one's credential.
    let other = "d-001";
    let s = status(
        &url,
        &reqwest::Method::POST,
        &format!("/api/v1/devices/{other}/check-in"),
        Some(&format!("Bearer {device}")),
    )
    .await;
    assert_eq!(s, 403);

    // The refusals are on record, with what was asked: the first of each route's minute as it
    // happened, the rest counted in one entry written when the minute is over (or the server
    // stops).
    server.stop().await;
    let store = hotswap_store::Store::open_in(
        &crate::support::database::for_dir(dir.path()),
        dir.path(),
        std::sync::Arc::new(clock),
    )
    .unwrap();
    let refusals = store
        .audit(&AuditQuery {
            actor: Some("anonymous".into()),
            action: Some("credential refused".into()),
            limit: Some(1000),
            ..AuditQuery::default()
        })
        .unwrap();
    let counted: u32 = refusals.entries.iter().map(|e| e.count).sum();
    assert!(
        counted as usize >= ROUTES.len(),
        "{counted} refusals on record"
    );
    assert!(
        refusals.entries.len() <= 2 * ROUTES.len(),
        "one entry a route and a minute, and one count: {} entries for {counted} refusals",
        refusals.entries.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_shown_once_listed_without_their_secret_revoked_and_audited() {
    let dir = data_dir();
    let server = Server::start(&dir).await;
    let admin = server.client();
    // The first start wrote the administrator token to a file only its owner may read.
    let file = dir.path().join(hotswap_server::ADMIN_TOKEN_FILE);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    assert!(server.admin_token.starts_with(API_TOKEN_PREFIX));

    let made = admin
        .create_token(&TokenRequest {
            name: "ci".into(),
            role: Role::Deployer,
            expires_in_days: Some(30),
        })
        .await
        .unwrap();
    assert!(made.token.starts_with(API_TOKEN_PREFIX), "{}", made.token);
    assert_eq!(made.info.created_by, "token:admin");
    let listed = admin.tokens().await.unwrap();
    let text = serde_json::to_string(&listed).unwrap();
    assert!(!text.contains(&made.token), "no secret in the list: {text}");
    assert!(
        !text.contains(&server.admin_token),
        "no secret in the list: {text}"
    );
    assert!(
        listed
            .iter()
            .any(|t| t.name == "ci" && made.token.starts_with(&t.hint))
    );

    // The token works, within its role.
    let ci = Client::new(&server.url).unwrap().with_token(&made.token);
    ci.deployments().await.unwrap();
    let refused = ci.tokens().await.unwrap_err();
    assert_eq!(refused.status(), Some(403));
    assert!(
        refused
            .to_string()
            .contains("lacks the permission `manage-tokens`"),
        "{refused}"
    );
    // Revoked: refused on its very next request.
    admin.revoke_token(made.info.id).await.unwrap();
    let refused = ci.deployments().await.unwrap_err();
    assert_eq!(refused.status(), Some(401));
    assert!(
        refused.to_string().contains("token `ci` was revoked"),
        "{refused}"
    );
    // Bad requests name what is wrong.
    for (body, expected) in [
        (
            TokenRequest {
                name: "x y".into(),
                role: Role::Viewer,
                expires_in_days: None,
            },
            "`name` must be 1 to 128 letters",
        ),
        (
            TokenRequest {
                name: "long".into(),
                role: Role::Viewer,
                expires_in_days: Some(400),
            },
            "`expiresInDays` must be from 1 to 366, found 400",
        ),
    ] {
        let e = admin.create_token(&body).await.unwrap_err();
        assert_eq!(e.status(), Some(400));
        assert!(e.to_string().contains(expected), "{e}");
    }

    // Each action that changed something is on record: who, what, on which object, how it ended.
    let page = admin
        .audit(&AuditQuery {
            actor: Some("token:admin".into()),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    let actions: Vec<(String, Option<String>, u16)> = page
        .entries
        .iter()
        .map(|e| (e.action.clone(), e.object.clone(), e.status))
        .collect();
    let revoke = format!("/api/v1/tokens/{}/revoke", made.info.id);
    assert!(
        actions.contains(&("POST /api/v1/tokens/{id}/revoke".into(), Some(revoke), 200)),
        "{actions:#?}"
    );
    assert!(
        actions.contains(&(
            "POST /api/v1/tokens".into(),
            Some("/api/v1/tokens".into()),
            400
        )),
        "{actions:#?}"
    );
    assert!(
        page.entries
            .iter()
            .all(|e| e.source.as_deref() == Some("127.0.0.1"))
    );
    let refused = admin
        .audit(&AuditQuery {
            action: Some("credential refused".into()),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert!(
        refused
            .entries
            .iter()
            .any(|e| e.status == 401 && e.object.as_deref() == Some("/api/v1/deployments")),
        "{refused:#?}"
    );
    // A device acts for itself only, and its credential is shown once, at registration.
    let registered = register_devices(&admin, 2, "1.0.0").await;
    let (d0, t0) = &registered[0];
    let mine = Client::new(&server.url).unwrap();
    mine.check_in(Device { id: d0, token: t0 }, &Default::default(), 0)
        .await
        .unwrap();
    let e = mine
        .check_in(
            Device {
                id: &registered[1].0,
                token: t0,
            },
            &Default::default(),
            0,
        )
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(403));
    let shown = serde_json::to_string(&admin.device(d0).await.unwrap()).unwrap();
    assert!(!shown.contains(t0.as_str()), "{shown}");
    server.stop().await;
}

/// Past its rate, a token or a device is answered 429 with `Retry-After`, each on its own
/// count: one device's requests do not use another's, nor an operator's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_or_a_device_past_its_rate_gets_429_with_retry_after() {
    use hotswap_server::ServerLimits;
    use hotswap_server::credentials::Rate;
    let dir = data_dir();
    let slow = Rate {
        per_second: 1,
        burst: 3,
    };
    let limits = ServerLimits {
        token_rate: slow,
        device_rate: slow,
        ..ServerLimits::default()
    };
    let server = Server::with_limits(
        &dir,
        limits,
        std::sync::Arc::new(hotswap_store::SystemClock),
    )
    .await;
    let admin = server.client().retrying(hotswap_client::Retry::ONCE);
    let registered = register_devices(&admin, 2, "1.0.0").await;
    // The registrations used the burst: the token is refused until its next request is due.
    let mut refused = None;
    for _ in 0..5 {
        if let Err(e) = admin.deployments().await {
            refused = Some(e);
            break;
        }
    }
    let refused = refused.expect("a token past its burst is refused");
    assert_eq!(refused.status(), Some(429), "{refused}");
    assert!(
        refused
            .to_string()
            .contains("rate limit: token `admin` may make 1 requests a second (3 at once)"),
        "{refused}"
    );
    let r = crate::support::http::raw()
        .get(format!("{}/api/v1/deployments", server.url))
        .bearer_auth(&server.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "Retry-After: {retry}");
    // A device has a count of its own: three check-ins pass, the fourth waits.
    let plain = Client::new(&server.url).unwrap();
    let (id, token) = &registered[0];
    let me = Device { id, token };
    // Its burst of 3 passes; then it waits (one more a second: a slow machine may let one
    // more through, never a burst).
    let started = std::time::Instant::now();
    let mut passed = 0;
    let mut limited = false;
    for _ in 0..10 {
        match plain.check_in(me, &Default::default(), 0).await {
            Ok(_) => passed += 1,
            Err(e) => {
                assert_eq!(e.status(), Some(429), "{e}");
                limited = true;
                break;
            }
        }
    }
    assert!(limited, "a device past its burst is refused");
    let allowed = 3 + started.elapsed().as_secs();
    assert!(
        (3..=allowed).contains(&passed),
        "{passed} passed, at most {allowed}"
    );
    let (id, token) = &registered[1];
    plain
        .check_in(Device { id, token }, &Default::default(), 0)
        .await
        .expect("another device is not held to the first one's count");
    server.stop().await;
}

/// Users sign in with a password and get a session of `SESSION_SECONDS`, held to their role;
/// a wrong password and a disabled user are refused, every sign-in is on record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_sign_in_and_their_sessions_are_held_to_their_role() {
    use hotswap_protocol::UserRequest;
    let dir = data_dir();
    let clock = ManualClock::new();
    let server = Server::with_clock(&dir, clock.clone()).await;
    let admin = server.client();
    let short = admin
        .create_user(&UserRequest {
            name: "ana".into(),
            role: Role::Deployer,
            password: "short".into(),
        })
        .await
        .unwrap_err();
    assert!(
        short.to_string().contains("at least 12 characters"),
        "{short}"
    );
    admin
        .create_user(&UserRequest {
            name: "ana".into(),
            role: Role::Deployer,
            password: "correct horse battery".into(),
        })
        .await
        .unwrap();
    let listed = serde_json::to_string(&admin.users().await.unwrap()).unwrap();
    assert!(
        !listed.contains("argon2") && !listed.contains("horse"),
        "{listed}"
    );
    let anonymous = Client::new(&server.url).unwrap();
    let wrong = anonymous
        .login("ana", "wrong password!!")
        .await
        .unwrap_err();
    assert_eq!(wrong.status(), Some(401));
    let unknown = anonymous
        .login("bob", "correct horse battery")
        .await
        .unwrap_err();
    assert_eq!(
        unknown.to_string(),
        wrong.to_string(),
        "names are not given away"
    );
    let session = anonymous
        .login("ana", "correct horse battery")
        .await
        .unwrap();
    assert_eq!(session.role, Role::Deployer);
    let ana = anonymous.with_token(&session.token);
    ana.deployments().await.unwrap();
    let e = ana.tokens().await.unwrap_err();
    assert_eq!(e.status(), Some(403));
    assert!(
        e.to_string().contains("user `ana` has the role `deployer`"),
        "{e}"
    );
    // Past its time a session is refused; a new sign-in works.
    clock.advance_ms((hotswap_server::sessions::SESSION_SECONDS + 1) * 1000);
    let e = ana.deployments().await.unwrap_err();
    assert_eq!(e.status(), Some(401));
    assert!(e.to_string().contains("expired"), "{e}");
    let again = anonymous
        .login("ana", "correct horse battery")
        .await
        .unwrap();
    let ana = anonymous.with_token(&again.token);
    ana.deployments().await.unwrap();
    // Disabled: refused on the next request, and at sign-in.
    admin.disable_user("ana").await.unwrap();
    assert_eq!(ana.deployments().await.unwrap_err().status(), Some(401));
    assert_eq!(
        anonymous
            .login("ana", "correct horse battery")
            .await
            .unwrap_err()
            .status(),
        Some(401)
    );
    // A session from another install is not one of this server's.
    let forged = anonymous.with_token(&format!("{}x", again.token));
    assert_eq!(forged.deployments().await.unwrap_err().status(), Some(401));
    let logins = admin
        .audit(&AuditQuery {
            actor: Some("user:ana".into()),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    let actions: Vec<(&str, u16)> = logins
        .entries
        .iter()
        .map(|e| (e.action.as_str(), e.status))
        .collect();
    assert!(
        actions.contains(&("login", 200)) && actions.contains(&("login refused", 401)),
        "{actions:?}"
    );
    server.stop().await;
}

/// A device enrolls itself with the fleet's secret and its key, waits `pending` (no credential,
/// left out of deployments) until an operator accepts it, then proves it holds its key and gets
/// a credential. Rejected, it is refused on its very next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enrolled_device_waits_for_acceptance_and_a_rejected_one_is_refused_at_once() {
    use crate::support::server::ENROLLMENT_SECRET;
    use ed25519_dalek::Signer;
    use hotswap_protocol::{DeviceRegistration, DeviceStatus, Enrollment, TokenClaim};
    let dir = data_dir();
    let server = Server::start(&dir).await;
    let admin = server.client();
    let raw = crate::support::http::raw();
    let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
    let enrollment = |secret: &str| Enrollment {
        device: DeviceRegistration {
            device_id: "e-1".into(),
            device_model: "sensor-v1".into(),
            firmware_version: "1.0.0".into(),
            ..Default::default()
        },
        public_key: hex::encode(key.verifying_key().as_bytes()),
        enrollment_secret: secret.into(),
    };
    let enroll = |body: Enrollment| {
        let raw = raw.clone();
        let url = format!("{}/api/v1/enroll", server.url);
        async move {
            let r = raw.post(url).json(&body).send().await.unwrap();
            (
                r.status().as_u16(),
                r.json::<serde_json::Value>().await.unwrap(),
            )
        }
    };
    let (status, answer) = enroll(enrollment("guess")).await;
    assert_eq!(status, 401, "{answer}");
    let (status, answer) = enroll(enrollment(ENROLLMENT_SECRET)).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["status"], "pending");
    let claim = |at: i64| TokenClaim {
        device_id: "e-1".into(),
        timestamp: at,
        signature: hex::encode(key.sign(&TokenClaim::signed_bytes("e-1", at)).to_bytes()),
    };
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    };
    let claim_url = format!("{}/api/v1/enroll/token", server.url);
    let r = raw
        .post(&claim_url)
        .json(&claim(now()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 409, "pending: no credential yet");
    crate::support::server::register_firmware(&admin, "2.0.0").await;
    let refused = admin
        .dry_run(&hotswap_protocol::DeploymentRequest {
            firmware_version: "2.0.0".into(),
            device_model: "sensor-v1".into(),
            target_devices: Some(vec!["e-1".into()]),
            strategy: "direct".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("none of them deployable"),
        "a pending device is not deployed to: {refused}"
    );
    let accepted = reqwest_post(&raw, &server, "/api/v1/devices/e-1/accept").await;
    assert_eq!(accepted["status"], "registered", "{accepted}");
    // A claim signed by another key, or too old, is refused.
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[6; 32]);
    let forged = TokenClaim {
        signature: hex::encode(
            stranger
                .sign(&TokenClaim::signed_bytes("e-1", now()))
                .to_bytes(),
        ),
        ..claim(now())
    };
    let r = raw.post(&claim_url).json(&forged).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = raw
        .post(&claim_url)
        .json(&claim(now() - 3600))
        .send()
        .await
        .unwrap();
    // A stale claim is refused as a bad credential is: it may be a replay.
    assert_eq!(r.status().as_u16(), 401);
    let token: hotswap_protocol::DeviceToken = raw
        .post(&claim_url)
        .json(&claim(now()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let me = Device {
        id: "e-1",
        token: &token.token,
    };
    let plain = Client::new(&server.url).unwrap();
    plain.check_in(me, &Default::default(), 0).await.unwrap();
    // Rejected: refused on its very next request.
    let rejected = reqwest_post(&raw, &server, "/api/v1/devices/e-1/reject").await;
    assert_eq!(rejected["status"], "rejected");
    let e = plain
        .check_in(me, &Default::default(), 0)
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(403), "{e}");
    assert_eq!(
        admin.device("e-1").await.unwrap().device.status,
        DeviceStatus::Rejected
    );
    // A registered device decommissioned: the same.
    let (id, t) = register_devices(&admin, 1, "1.0.0").await.remove(0);
    let me = Device { id: &id, token: &t };
    plain.check_in(me, &Default::default(), 0).await.unwrap();
    reqwest_post(&raw, &server, &format!("/api/v1/devices/{id}/decommission")).await;
    assert_eq!(
        plain
            .check_in(me, &Default::default(), 0)
            .await
            .unwrap_err()
            .status(),
        Some(403)
    );
    server.stop().await;
}

async fn reqwest_post(raw: &reqwest::Client, server: &Server, path: &str) -> serde_json::Value {
    let r = raw
        .post(format!("{}{path}", server.url))
        .bearer_auth(&server.admin_token)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.unwrap()
}
