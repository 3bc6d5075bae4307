//! TLS: the server on a certificate made for the test (`rcgen`), HTTP/2 and HTTP/1.1 chosen by
//! ALPN, the typed client trusting the test's CA, and plain HTTP refused on the TLS port.

use std::sync::Arc;

use hotswap_client::{Client, ClientConfig};
use hotswap_server::{ADMIN_TOKEN_FILE, ServerConfig, ServerLimits, TlsFiles};

use crate::support::release_key;
use crate::support::server::data_dir;

/// A raw client that trusts `ca` and offers `alpn`.
fn raw_client(ca: &[u8], alpn: &[&[u8]]) -> reqwest::Client {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    {
        hotswap_client::install_crypto_provider();
        reqwest::Client::builder()
    }
    .use_preconfigured_tls(config)
    .build()
    .unwrap()
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
    };
    let config = ServerConfig {
        data_dir: dir.path().join("data"),
        trusted_keys: vec![release_key().trusted()],
        limits: ServerLimits::default(),
        tick: std::time::Duration::from_millis(50),
        protected_labels: Vec::new(),
        tls: Some(files.clone()),
        enrollment: None,
    };
    let state = hotswap_server::state(&config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let tls = hotswap_server::tls_config(&files).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(hotswap_server::serve_on(
        listener,
        state,
        Some(tls),
        async {
            let _ = stopped.await;
        },
    ));
    let url = format!("https://127.0.0.1:{port}");
    let token = std::fs::read_to_string(config.data_dir.join(ADMIN_TOKEN_FILE))
        .unwrap()
        .trim()
        .to_string();

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
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
