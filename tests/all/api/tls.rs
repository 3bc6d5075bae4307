//! TLS: the server on a certificate made for the test (`rcgen`), HTTP/2 and HTTP/1.1 chosen by
//! ALPN, the typed client trusting the test's CA, and plain HTTP refused on the TLS port; devices
//! with client certificates from a fleet CA instead of tokens.

use std::sync::Arc;

use hotswap_client::{Client, ClientConfig};
use hotswap_server::{ADMIN_TOKEN_FILE, ServerConfig, ServerLimits, TlsFiles};

use crate::support::server::data_dir;
use crate::support::{Ca, release_key};

/// A raw client that trusts `ca` and offers `alpn`.
fn raw_client(ca: &[u8], alpn: &[&[u8]]) -> reqwest::Client {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config =
        rustls::ClientConfig::builder_with_provider(Arc::new(hotswap_client::crypto_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    reqwest_over(config)
}

fn reqwest_over(config: rustls::ClientConfig) -> reqwest::Client {
    {
        hotswap_client::install_crypto_provider();
        reqwest::Client::builder()
    }
    .use_preconfigured_tls(config)
    .build()
    .unwrap()
}

/// A server over TLS with `files`, its data in `dir`: its URL, the administrator token, and how
/// to stop it.
struct TlsServer {
    url: String,
    token: String,
    port: u16,
    stop: tokio::sync::oneshot::Sender<()>,
    served: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl TlsServer {
    async fn start(dir: &std::path::Path, files: TlsFiles) -> TlsServer {
        let config = ServerConfig {
            data_dir: dir.join("data"),
            database: crate::support::database::for_dir(&dir.join("data")),
            trusted_keys: vec![release_key().trusted()],
            limits: ServerLimits::default(),
            tick: std::time::Duration::from_millis(50),
            protected_labels: Vec::new(),
            tls: Some(files.clone()),
            enrollment: None,
            unchecked_devices: false,
            plugin_limits: Default::default(),
            plugin_ceilings: Default::default(),
            traces: Default::default(),
        };
        let state = hotswap_server::state(&config).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tls = hotswap_server::tls_config(&files).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(hotswap_server::serve_on(
            listener,
            state,
            Some(tls),
            async {
                let _ = stopped.await;
            },
        ));
        let token = std::fs::read_to_string(config.data_dir.join(ADMIN_TOKEN_FILE))
            .unwrap()
            .trim()
            .to_string();
        TlsServer {
            url: format!("https://127.0.0.1:{port}"),
            token,
            port,
            stop,
            served,
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.served.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_speaks_https_with_http2_and_http1_by_alpn() {
    let dir = data_dir();
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let files = TlsFiles {
        cert: cert.clone(),
        key,
        client_ca: None,
    };
    let server = TlsServer::start(dir.path(), files).await;
    let (url, token, port) = (server.url.clone(), server.token.clone(), server.port);

    // The typed client, trusting the test's CA, with the administrator token.
    let client = Client::with_config(ClientConfig {
        ca_certificate: Some(cert),
        token: Some(token.clone()),
        ..ClientConfig::new(&url)
    })
    .unwrap();
    client
        .wait_until_up(
            std::time::Duration::from_millis(20),
            std::time::Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert!(client.deployments().await.unwrap().is_empty());

    // ALPN: h2 when offered, HTTP/1.1 otherwise.
    let ca = certified.cert.pem();
    for (alpn, version) in [
        (
            &[b"h2".as_slice(), b"http/1.1"][..],
            reqwest::Version::HTTP_2,
        ),
        (&[b"http/1.1".as_slice()][..], reqwest::Version::HTTP_11),
    ] {
        let r = raw_client(ca.as_bytes(), alpn)
            .get(format!("{url}/api/v1/firmware"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.version(), version, "{alpn:?}");
    }
    // A client that does not trust the certificate is refused in the handshake.
    let stranger = Client::new(&url)
        .unwrap()
        .retrying(hotswap_client::Retry::ONCE);
    let e = stranger.healthz().await.unwrap_err();
    assert!(!e.to_string().is_empty());
    // Plain HTTP on the TLS port gets no answer.
    let plain = crate::support::http::raw()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    server.stop().await;
}

/// A raw client trusting `ca` that presents the client certificate `identity` (PEM chain, PEM
/// key).
fn device_client(ca: &str, identity: Option<&(String, String)>) -> reqwest::Client {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder =
        rustls::ClientConfig::builder_with_provider(Arc::new(hotswap_client::crypto_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(chain.as_bytes())
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
    };
    reqwest_over(config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_with_a_client_certificate_needs_no_token_and_acts_only_for_itself() {
    use hotswap_protocol::{CheckIn, CheckInAnswer};
    let dir = data_dir();
    let server_ca = Ca::new("HotSwap test server CA");
    let (server_cert, server_key) = server_ca.sign("localhost", &["localhost", "127.0.0.1"]);
    let fleet_ca = Ca::new("HotSwap test fleet CA");
    let path = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let files = TlsFiles {
        cert: path("cert.pem", &server_cert),
        key: path("key.pem", &server_key),
        client_ca: Some(path("fleet-ca.pem", &fleet_ca.cert.pem())),
    };
    let server_ca_file = path("server-ca.pem", &server_ca.cert.pem());
    let server = TlsServer::start(dir.path(), files).await;
    let (url, token) = (server.url.clone(), server.token.clone());
    // The operator has no certificate: the server asks for one but does not require it.
    let admin = Client::with_config(ClientConfig {
        ca_certificate: Some(server_ca_file),
        token: Some(token),
        ..ClientConfig::new(&url)
    })
    .unwrap();
    admin
        .wait_until_up(
            std::time::Duration::from_millis(20),
            std::time::Duration::from_secs(10),
        )
        .await
        .unwrap();
    crate::support::server::register_firmware(&admin, "1.0.0").await;
    crate::support::server::register_firmware(&admin, "2.0.0").await;
    crate::support::server::register_devices(&admin, 2, "1.0.0").await;

    let ca = server_ca.cert.pem();
    // d-000's certificate names it by its common name, d-001's by a DNS SAN.
    let d0 = device_client(&ca, Some(&fleet_ca.sign("d-000", &[])));
    let d1 = device_client(&ca, Some(&fleet_ca.sign("sensor", &["d-001"])));
    let check_in = |client: &reqwest::Client, device: &str| {
        client
            .post(format!("{url}/api/v1/devices/{device}/check-in"))
            .json(&CheckIn {
                firmware_version: Some("1.0.0".into()),
                ..CheckIn::default()
            })
            .send()
    };
    let r = check_in(&d0, "d-000").await.unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let r = check_in(&d1, "d-001").await.unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    // Its certificate does not make it another device.
    let r = check_in(&d0, "d-001").await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(
        r.text().await.unwrap().contains("not device `d-001`"),
        "names the mismatch"
    );
    // A device certificate is no operator credential.
    let r = d0
        .get(format!("{url}/api/v1/firmware"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Neither certificate nor token: refused as before.
    let r = check_in(&device_client(&ca, None), "d-000").await.unwrap();
    assert_eq!(r.status(), 401);
    // A certificate from another CA fails the handshake.
    let stranger = device_client(&ca, Some(&Ca::new("not the fleet's").sign("d-000", &[])));
    assert!(check_in(&stranger, "d-000").await.is_err());

    // An artifact: only while an assignment hands it to the certificate's device.
    admin
        .create_deployment(&hotswap_protocol::DeploymentRequest {
            firmware_version: "2.0.0".into(),
            device_model: "sensor-v1".into(),
            target_devices: Some(vec!["d-000".into()]),
            strategy: "direct".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut assignment = None;
    for _ in 0..200 {
        let answer: CheckInAnswer = check_in(&d0, "d-000").await.unwrap().json().await.unwrap();
        if let Some(a) = answer.assignment {
            assignment = Some(a);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let assignment = assignment.expect("an assignment for d-000");
    let r = d0
        .get(format!("{url}{}", assignment.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.bytes().await.unwrap().len() as u64,
        assignment.size,
        "the whole artifact"
    );
    let r = d1
        .get(format!("{url}{}", assignment.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "not assigned to d-001");

    // Decommissioned: its certificate stops counting at the next request.
    admin
        .set_standing("d-000", hotswap_protocol::StandingChange::Decommission)
        .await
        .unwrap();
    let r = check_in(&d0, "d-000").await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("not in the fleet"));

    server.stop().await;
}
