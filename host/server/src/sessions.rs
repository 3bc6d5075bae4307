//! Signing in: users with a password (an argon2 hash), and the short-lived session tokens (JWT,
//! HS256 under a key of this install's own, `SESSION_KEY_FILE`) that a sign-in gives. A session
//! lasts `SESSION_SECONDS`; a disabled user's sessions fail on their next request.

use std::path::Path;

use hotswap_protocol::{Role, UnixSeconds};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// How long a session lasts, in seconds.
pub const SESSION_SECONDS: i64 = 15 * 60;

/// The file that holds the key sessions are signed with.
pub const SESSION_KEY_FILE: &str = "session.key";

/// The shortest password a user may have.
pub const MIN_PASSWORD_CHARS: usize = 12;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    role: Role,
    iat: i64,
    exp: i64,
}

/// Issues and checks session tokens.
pub struct Sessions {
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// A hash no password matches, made as users' are: what an unknown name is checked
    /// against, so it costs what a known one does.
    dummy_hash: String,
}

impl Sessions {
    /// The sessions of the install whose data directory is `dir`: its key read, or made (32
    /// random bytes, mode 0600) on the first start.
    pub fn open(dir: &Path, store: &hotswap_store::Store) -> anyhow::Result<Sessions> {
        // Replicas on one database sign with one key, so a session works on any of them.
        let shared = store.shared_secret(SESSION_KEY_FILE, || {
            let mut key = vec![0u8; 32];
            getrandom::fill(&mut key).expect("the system gives randomness");
            key
        })?;
        if let Some(key) = shared {
            anyhow::ensure!(
                key.len() == 32,
                "the shared session key holds {} bytes, expected 32",
                key.len()
            );
            return Sessions::with_key(&key);
        }
        let path = dir.join(SESSION_KEY_FILE);
        let key = match std::fs::read(&path) {
            Ok(key) if key.len() == 32 => key,
            Ok(key) => anyhow::bail!("{} holds {} bytes, expected 32", path.display(), key.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = vec![0u8; 32];
                getrandom::fill(&mut key).map_err(|e| anyhow::anyhow!("randomness: {e}"))?;
                crate::credentials::write_secret(&path, &key)?;
                key
            }
            Err(e) => return Err(e.into()),
        };
        Sessions::with_key(&key)
    }

    fn with_key(key: &[u8]) -> anyhow::Result<Sessions> {
        let mut unguessable = [0u8; 32];
        getrandom::fill(&mut unguessable).map_err(|e| anyhow::anyhow!("randomness: {e}"))?;
        Ok(Sessions {
            encoding: EncodingKey::from_secret(key),
            decoding: DecodingKey::from_secret(key),
            dummy_hash: hash_password(&hex::encode(unguessable))?,
        })
    }

    /// The hash an unknown or disabled user's sign-in is checked against.
    pub fn dummy_hash(&self) -> &str {
        &self.dummy_hash
    }

    /// A session token for `name` in `role`, made `now`; and when it expires.
    pub fn issue(
        &self,
        name: &str,
        role: Role,
        now: UnixSeconds,
    ) -> anyhow::Result<(String, UnixSeconds)> {
        let exp = now.0 + SESSION_SECONDS;
        let claims = Claims {
            sub: name.to_string(),
            role,
            iat: now.0,
            exp,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok((token, UnixSeconds(exp)))
    }

    /// The user and role a session token stands for, if it is this install's and not expired
    /// at `now` (the server's clock decides, not the token's holder).
    pub fn check(&self, token: &str, now: UnixSeconds) -> Result<(String, Role), String> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map_err(|e| format!("not a session of this server: {e}"))?;
        if data.claims.exp <= now.0 {
            return Err(format!(
                "the session of `{}` expired at {}: sign in again",
                data.claims.sub, data.claims.exp
            ));
        }
        Ok((data.claims.sub, data.claims.role))
    }
}

/// The argon2 hash (PHC string) of a password.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    use argon2::password_hash::PasswordHasher;
    Ok(argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))?
        .to_string())
}

/// Whether `password` is the one `hash` was made from.
pub fn password_matches(password: &str, hash: &str) -> bool {
    use argon2::password_hash::PasswordVerifier;
    use argon2::password_hash::phc::PasswordHash;
    PasswordHash::new(hash).is_ok_and(|parsed| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}
