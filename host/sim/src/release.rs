//! Releases as the simulated fleet and the commands that feed it make them: the example agent
//! tagged per version, and the registration a signed release is sent to a server with.

use base64::Engine as _;
use hotswap_device_vm::release::Release;
use hotswap_protocol::FirmwareRegistration;

/// `image` with a custom section naming `tag`: the same agent, distinct bytes per version.
pub fn tagged(image: &[u8], tag: &str) -> Vec<u8> {
    let name = b"hotswap-version";
    let mut content = vec![name.len() as u8];
    content.extend_from_slice(name);
    content.extend_from_slice(tag.as_bytes());
    assert!(content.len() < 128, "a one-byte section size");
    let mut out = image.to_vec();
    out.push(0);
    out.push(content.len() as u8);
    out.extend_from_slice(&content);
    out
}

/// The registration (`POST /api/v1/firmware`) of a signed release for `device_model`.
pub fn registration(release: &Release, device_model: &str, notes: &str) -> FirmwareRegistration {
    FirmwareRegistration {
        version: release.manifest.version.to_string(),
        device_model: device_model.to_string(),
        release_notes: notes.to_string(),
        checksum: format!("sha256:{}", hex::encode(release.manifest.sha256)),
        binary: Some(base64::engine::general_purpose::STANDARD.encode(&release.image)),
        binary_url: None,
        signature: hex::encode(release.signature),
        security_counter: release.manifest.security_counter,
        compatibility: Default::default(),
        sunset_at: None,
    }
}
