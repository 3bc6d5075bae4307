//! Credentials and who holds them, without HTTP: the [`Principal`] a checked credential names,
//! secrets made and kept as SHA-256 digests, the first start's administrator token, the cache
//! of credentials already looked up ([`Credentials`]), and the rate limits per caller. The
//! middleware that holds each request to its route's rule is `api::auth`; the rollout floor
//! uses this module to forget a device's credential when its standing changes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hotswap_protocol::auth::API_TOKEN_PREFIX;
use hotswap_protocol::{Role, TokenInfo, UnixSeconds};
use hotswap_store::{NewToken, Store};
use sha2::{Digest, Sha256};

/// Who a request comes from, once its credential is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Operator {
        token_id: i64,
        name: String,
        role: Role,
    },
    /// A signed-in user, by a session token.
    User {
        name: String,
        role: Role,
    },
    Device {
        device_id: String,
    },
}

impl Principal {
    /// How the audit log names it.
    pub fn actor(&self) -> String {
        match self {
            Principal::Operator { name, .. } => format!("token:{name}"),
            Principal::User { name, .. } => format!("user:{name}"),
            Principal::Device { device_id } => format!("device:{device_id}"),
        }
    }
}

/// The system's randomness failed: no secret could be made.
#[derive(Debug, thiserror::Error)]
#[error("randomness: {0}")]
pub struct NoRandomness(getrandom::Error);

/// A new secret: the prefix and 32 random bytes in hex.
pub fn new_secret(prefix: &str) -> Result<String, NoRandomness> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(NoRandomness)?;
    Ok(format!("{prefix}{}", hex::encode(bytes)))
}

/// What the server keeps of a secret: its SHA-256, hex.
pub fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The first characters of a token, to tell tokens apart in a list.
pub fn hint(secret: &str) -> String {
    secret.chars().take(API_TOKEN_PREFIX.len() + 4).collect()
}

/// The file the first start writes the administrator token to.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// On a data directory with no token yet, makes an administrator token and writes it to
/// `<dir>/ADMIN_TOKEN_FILE` (mode 0600). Returns the file's path when it made one. The token
/// itself is never logged.
pub fn first_start(store: &Store, dir: &Path) -> anyhow::Result<Option<PathBuf>> {
    if store.token_count()? > 0 {
        return Ok(None);
    }
    let secret = new_secret(API_TOKEN_PREFIX)?;
    let path = dir.join(ADMIN_TOKEN_FILE);
    // Written before the token is stored: a token no file holds would lock everyone out.
    write_secret(&path, format!("{secret}\n").as_bytes())?;
    let stored = store.add_first_token(&NewToken {
        name: "admin".into(),
        role: Role::Admin,
        sha256: digest(&secret),
        hint: hint(&secret),
        created_by: "first start".into(),
        expires_at: None,
    })?;
    if !stored {
        // Another replica on the same database made the first token meanwhile.
        std::fs::remove_file(&path)?;
        return Ok(None);
    }
    Ok(Some(path))
}

/// Writes a secret to a file only its owner may read, synced.
pub(crate) fn write_secret(path: &Path, secret: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(secret)?;
    file.sync_all()
}

/// Tokens and device credentials already looked up, by the SHA-256 of the secret.
pub struct Credentials {
    pub(crate) tokens: quick_cache::sync::Cache<String, Arc<TokenInfo>>,
    /// Device id to the SHA-256 of its credential.
    pub(crate) devices: quick_cache::sync::Cache<String, Arc<str>>,
    /// The SHA-256 of a device credential to its device, for the artifact route.
    pub(crate) owners: quick_cache::sync::Cache<String, Arc<str>>,
    /// The artifact each device was last handed by a check-in, and when.
    grants: quick_cache::sync::Cache<String, Grant>,
    /// Devices found in the fleet, whose client certificates count.
    pub(crate) certified: quick_cache::sync::Cache<String, ()>,
}

/// An artifact a check-in handed to a device.
#[derive(Debug, Clone)]
struct Grant {
    sha256: Arc<str>,
    at: std::time::Instant,
}

/// How long an artifact a check-in handed out may be fetched on the strength of that check-in
/// alone, in seconds; after it, or when the device reported the assignment over, the store is
/// asked whether an assignment still hands it the artifact.
pub const GRANT_SECONDS: u64 = 600;

/// The most devices whose credentials are kept in memory (the store holds the rest).
pub const CREDENTIALS_CACHED: usize = 250_000;

impl Default for Credentials {
    fn default() -> Self {
        Credentials {
            tokens: quick_cache::sync::Cache::new(4096),
            devices: quick_cache::sync::Cache::new(CREDENTIALS_CACHED),
            owners: quick_cache::sync::Cache::new(CREDENTIALS_CACHED),
            grants: quick_cache::sync::Cache::new(CREDENTIALS_CACHED),
            certified: quick_cache::sync::Cache::new(CREDENTIALS_CACHED),
        }
    }
}

impl Credentials {
    /// Forgets every cached token (a token was revoked by id).
    pub fn forget_tokens(&self) {
        self.tokens.clear();
    }

    /// A check-in handed `a` to `device_id`: its artifact may be fetched.
    pub fn grant(&self, device_id: &str, a: &hotswap_protocol::Assignment) {
        let sha256 = a.url.rsplit('/').next().unwrap_or_default();
        self.grants.insert(
            device_id.to_string(),
            Grant {
                sha256: Arc::from(sha256),
                at: std::time::Instant::now(),
            },
        );
    }

    /// The device reported its assignment over.
    pub fn withdraw(&self, device_id: &str) {
        self.grants.remove(device_id);
    }

    /// Whether a check-in handed `device_id` the artifact `sha256` recently enough.
    pub fn granted(&self, device_id: &str, sha256: &str) -> bool {
        self.grants.get(device_id).is_some_and(|g| {
            &*g.sha256 == sha256 && g.at.elapsed() < std::time::Duration::from_secs(GRANT_SECONDS)
        })
    }

    /// A device was given the credential whose hash is `sha256` (registered, or given a new
    /// one): its first request needs nothing from the store.
    pub fn remember_device(&self, device_id: &str, sha256: &str) {
        let sha: Arc<str> = Arc::from(sha256);
        self.devices.insert(device_id.to_string(), sha.clone());
        self.owners.insert(sha.to_string(), Arc::from(device_id));
    }

    /// A device's credential changed (registered again with a new one, or rejected).
    pub fn forget_device(&self, device_id: &str) {
        if let Some((_, sha)) = self.devices.remove(device_id) {
            self.owners.remove(&*sha);
        }
        self.grants.remove(device_id);
        self.certified.remove(device_id);
    }
}

/// A rate limit: `per_second` requests a second on average, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_second: u32,
    pub burst: u32,
}

/// Requests one operator token may make: a script or a dashboard polling status, with room for a
/// CLI import in batches.
pub const TOKEN_RATE: Rate = Rate {
    per_second: 100,
    burst: 500,
};

/// Requests one device may make. An update costs a device three requests and a download, a
/// long poll one a minute; the scale benchmark's devices stay far below it.
pub const DEVICE_RATE: Rate = Rate {
    per_second: 20,
    burst: 100,
};

type Limiter<K> = governor::DefaultKeyedRateLimiter<K>;

/// A request over its caller's rate: why, and when to try again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    pub message: String,
    pub retry_after_seconds: u64,
}

/// The rate limits, by operator token and by device (never by address: a fleet behind one
/// gateway shares an address).
pub struct RateLimits {
    tokens: Limiter<i64>,
    users: Limiter<String>,
    devices: Limiter<String>,
    token_rate: Rate,
    device_rate: Rate,
}

fn quota(r: Rate) -> governor::Quota {
    let per_second = std::num::NonZeroU32::new(r.per_second.max(1)).expect("at least 1");
    let burst = std::num::NonZeroU32::new(r.burst.max(1)).expect("at least 1");
    governor::Quota::per_second(per_second).allow_burst(burst)
}

impl RateLimits {
    pub fn new(token_rate: Rate, device_rate: Rate) -> RateLimits {
        RateLimits {
            tokens: governor::RateLimiter::keyed(quota(token_rate)),
            users: governor::RateLimiter::keyed(quota(token_rate)),
            devices: governor::RateLimiter::keyed(quota(device_rate)),
            token_rate,
            device_rate,
        }
    }

    /// Whether `p` may make a request now; the refusal says when to try again.
    pub fn check(&self, p: &Principal) -> Result<(), Limited> {
        let (result, rate, whose) = match p {
            Principal::Operator { token_id, name, .. } => (
                self.tokens.check_key(token_id),
                self.token_rate,
                format!("token `{name}`"),
            ),
            Principal::User { name, .. } => (
                self.users.check_key(name),
                self.token_rate,
                format!("user `{name}`"),
            ),
            Principal::Device { device_id } => (
                self.devices.check_key(device_id),
                self.device_rate,
                format!("device `{device_id}`"),
            ),
        };
        result.map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ));
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            Limited {
                message: format!(
                    "rate limit: {whose} may make {} requests a second ({} at once); try again in {seconds} s",
                    rate.per_second, rate.burst
                ),
                retry_after_seconds: seconds.max(1),
            }
        })
    }

    /// Forgets keys that have been quiet long enough to be back at their full burst.
    pub fn shrink(&self) {
        self.tokens.retain_recent();
        self.users.retain_recent();
        self.devices.retain_recent();
    }
}

/// The expiry of a token made now for `days`.
pub fn expiry(now: UnixSeconds, days: Option<u32>) -> Option<UnixSeconds> {
    days.map(|d| UnixSeconds(now.0 + i64::from(d) * 86_400))
}
