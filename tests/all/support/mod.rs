//! What the tests share: a server in this process ([`server`]), the real `hotswap` command as a
//! process of its own ([`process`]), scripted devices on the typed client ([`device`]), raw JSON
//! requests for the tests of bad input ([`http`]), the database the servers keep their state in
//! ([`database`]), and the release key, images and plugin
//! runtime every topic uses.

pub mod balancer;
pub mod database;
pub mod http;
pub mod process;
pub mod scripted;
pub mod server;

use std::sync::OnceLock;

use hotswap_device_vm::Version;
use hotswap_device_vm::release::ReleaseKey;
use hotswap_plugin_host::{FleetRecord, PluginRuntime, RuntimeConfig};
use hotswap_protocol::FirmwareRegistration;

/// The key every test release is signed with; the test servers trust it.
pub fn release_key() -> ReleaseKey {
    ReleaseKey::from_seed([7; 32])
}

/// Bytes the registry takes as an agent: it checks checksums and signatures, not WebAssembly.
pub fn registry_image() -> Vec<u8> {
    (0..4096u32).map(|i| (i * 7 % 251) as u8).collect()
}

/// A distinct registry image per version.
pub fn image(version: &str) -> Vec<u8> {
    let mut image = registry_image();
    image.extend_from_slice(version.as_bytes());
    image
}

/// A registration of `image` as `version` for `sensor-v1`, signed by `key`.
pub fn registration(key: &ReleaseKey, version: &str, image: &[u8]) -> FirmwareRegistration {
    let release = key.release(Version::parse(version).unwrap(), image, 0);
    hotswap_sim::registration(&release, "sensor-v1", "bug fixes")
}

/// The same registration as JSON, for tests that edit it field by field.
pub fn registration_json(key: &ReleaseKey, version: &str, image: &[u8]) -> serde_json::Value {
    serde_json::to_value(registration(key, version, image)).unwrap()
}

pub fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// One runtime with the default limits, shared by the tests that do not change limits, so each
/// component is compiled once per run.
pub fn runtime() -> &'static PluginRuntime {
    static RUNTIME: OnceLock<PluginRuntime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        PluginRuntime::new(RuntimeConfig::default()).expect("plugin runtime starts")
    })
}

/// The generated test fleet: natively, and as the host hands it to plugins.
pub fn fleet(n: usize, regions: usize) -> (hotswap_plan::Fleet, FleetRecord) {
    let native = hotswap_plan::fleet::generate(n, regions);
    let wit = FleetRecord::from(&native);
    (native, wit)
}

/// The region name of device `d` of a fleet.
pub fn region(fleet: &hotswap_plan::Fleet, d: u32) -> &str {
    &fleet.regions[fleet.region[d as usize] as usize]
}

/// A CA of the test's, and certificates it signs.
pub struct Ca {
    pub cert: rcgen::Certificate,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            cert,
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A leaf certificate: `common_name` as its subject, `sans` as its DNS names; its PEM and
    /// its key's.
    pub fn sign(&self, common_name: &str, sans: &[&str]) -> (String, String) {
        let mut params =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}
