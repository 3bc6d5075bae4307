//! Signing releases, as a fleet's release pipeline does: a release key (Ed25519) and the
//! signed manifest of an agent image it makes. What a device checks is in [`crate::slots`];
//! this is the other side, for the server's tools, the simulator and the tests. Needs `std`.

/// A release key and the releases it signs, as a fleet's release pipeline makes them.
pub struct ReleaseKey {
    key: ed25519_dalek::SigningKey,
}

/// An agent image with its signed manifest: what a device is sent.
#[derive(Debug, Clone)]
pub struct Release {
    pub manifest: crate::Manifest,
    pub key_id: crate::KeyId,
    pub signature: [u8; 64],
    pub image: Vec<u8>,
}

impl ReleaseKey {
    /// The key whose secret is `seed`. Fixed seeds make reproducible tests.
    pub fn from_seed(seed: [u8; 32]) -> ReleaseKey {
        ReleaseKey {
            key: ed25519_dalek::SigningKey::from_bytes(&seed),
        }
    }

    /// The key as a device trusts it.
    pub fn trusted(&self) -> crate::slots::TrustedKey {
        crate::slots::TrustedKey::new(self.key.verifying_key())
    }

    /// Signs a release of `image`.
    pub fn release(&self, version: crate::Version, image: &[u8], security_counter: u32) -> Release {
        use ed25519_dalek::Signer;
        let manifest = crate::Manifest::for_image(version, image, security_counter);
        Release {
            manifest,
            key_id: crate::KeyId::of(self.key.verifying_key().as_bytes()),
            signature: self.key.sign(&manifest.signing_bytes()).to_bytes(),
            image: image.to_vec(),
        }
    }
}
