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
///
/// With replicas, a credential may change on another one (a token revoked, a device rejected,
/// decommissioned or given a new credential): each change is announced on the database's
/// notification channel ([`Credentials::changed_elsewhere`]) and every replica forgets what it
/// cached of it. While a replica's listener is not connected it may miss such announcements, so
/// it trusts nothing it cached until it listens again, and then drops the lot: a change reaches
/// every replica as soon as its notification arrives, and no replica ever acts on a cached
/// credential it could not hear about.
pub struct Credentials {
    tokens: quick_cache::sync::Cache<String, Arc<TokenInfo>>,
    /// Device id to the SHA-256 of its credential.
    devices: quick_cache::sync::Cache<String, Arc<str>>,
    /// The SHA-256 of a device credential to its device, for the artifact route.
    owners: quick_cache::sync::Cache<String, Arc<str>>,
    /// The artifact each device was last handed by a check-in, and when.
    grants: quick_cache::sync::Cache<String, Grant>,
    /// Devices found in the fleet, whose client certificates count.
    certified: quick_cache::sync::Cache<String, ()>,
    /// How many changes this replica has seen. A look-up notes it before it reads the store
    /// and caches what it read only if no change came in between (a change takes the write
    /// lock), so a stale read never lands in the cache after the change that made it stale.
    changes: std::sync::RwLock<Generation>,
    /// Whether changes made on other replicas reach this one: always with one server, and on
    /// PostgreSQL while the listener listens.
    hearing: std::sync::atomic::AtomicBool,
    announcer: Option<hotswap_store::Announcer>,
}

/// How many credential changes a replica had seen when a look-up began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generation(u64);

/// The announced key that stands for every operator token (a revocation names a token by id,
/// and the cache is by hash: every replica forgets them all).
pub const TOKENS_CHANGED: &str = "tokens";

/// The prefix of the announced key that names a device whose credential or standing changed.
pub const DEVICE_CHANGED: &str = "device:";

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
    /// One server alone: nothing changes elsewhere.
    fn default() -> Self {
        Credentials::new(None)
    }
}

impl Credentials {
    /// The cache of a server whose changes `announcer` tells the other replicas of (`None`: a
    /// server alone). With replicas, nothing cached counts until [`Credentials::heard`] says the
    /// listener listens.
    pub fn new(announcer: Option<hotswap_store::Announcer>) -> Credentials {
        Credentials {
            tokens: quick_cache::sync::Cache::new(4096),
            devices: quick_cache::sync::Cache::new(CREDENTIALS_CACHED),
            owners: quick_cache::sync::Cache::new(CREDENTIALS_CACHED),
            grants: quick_cache::sync::Cache::new(CREDENTIALS_CACHED),
            certified: quick_cache::sync::Cache::new(CREDENTIALS_CACHED),
            changes: std::sync::RwLock::new(Generation(0)),
            hearing: std::sync::atomic::AtomicBool::new(announcer.is_none()),
            announcer,
        }
    }

    /// What this replica's listener heard: changes made elsewhere, or that it may have missed
    /// some ([`Heard::Deaf`](hotswap_store::Heard::Deaf)) or listens again.
    pub fn heard(&self, heard: &hotswap_store::Heard) {
        use std::sync::atomic::Ordering;
        match heard {
            hotswap_store::Heard::Credentials(keys) => self.changed_elsewhere(keys),
            hotswap_store::Heard::Deaf => self.hearing.store(false, Ordering::SeqCst),
            hotswap_store::Heard::Listening => {
                self.change(|c| {
                    c.tokens.clear();
                    c.devices.clear();
                    c.owners.clear();
                    c.grants.clear();
                    c.certified.clear();
                });
                self.hearing.store(true, Ordering::SeqCst);
            }
            hotswap_store::Heard::Devices(_) => {}
        }
    }

    /// Forgets what another replica announced changed.
    pub fn changed_elsewhere(&self, keys: &[String]) {
        let devices: Vec<&str> = keys
            .iter()
            .filter_map(|k| k.strip_prefix(DEVICE_CHANGED))
            .collect();
        self.change(|c| {
            if keys.iter().any(|k| k == TOKENS_CHANGED) {
                c.tokens.clear();
            }
            c.forget_devices_here(&devices);
        });
    }

    fn change(&self, f: impl FnOnce(&Credentials)) {
        let mut seen = self.changes.write().unwrap_or_else(|e| e.into_inner());
        seen.0 += 1;
        f(self);
    }

    fn trusted(&self) -> bool {
        self.hearing.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Caches what a look-up begun at `since` read, unless a change came in between.
    fn cache(&self, since: Generation, f: impl FnOnce(&Credentials)) {
        let seen = self.changes.read().unwrap_or_else(|e| e.into_inner());
        if *seen == since && self.trusted() {
            f(self);
        }
    }

    /// Notes the changes seen so far, before a look-up reads the store.
    pub fn generation(&self) -> Generation {
        *self.changes.read().unwrap_or_else(|e| e.into_inner())
    }

    /// An operator token by the SHA-256 of its secret, if cached and trusted.
    pub fn token(&self, sha: &str) -> Option<Arc<TokenInfo>> {
        self.tokens.get(sha).filter(|_| self.trusted())
    }

    /// Caches a token read from the store by a look-up begun at `since`.
    pub fn cache_token(&self, since: Generation, sha: String, token: Arc<TokenInfo>) {
        self.cache(since, |c| c.tokens.insert(sha, token));
    }

    /// The SHA-256 of a device's credential, if cached and trusted.
    pub fn device_credential(&self, device_id: &str) -> Option<Arc<str>> {
        self.devices.get(device_id).filter(|_| self.trusted())
    }

    /// Caches a device's credential read by a look-up begun at `since`.
    pub fn cache_device_credential(&self, since: Generation, device_id: &str, sha: Arc<str>) {
        self.cache(since, |c| c.devices.insert(device_id.to_string(), sha));
    }

    /// The device whose credential's SHA-256 is `sha`, if cached and trusted.
    pub fn owner(&self, sha: &str) -> Option<Arc<str>> {
        self.owners.get(sha).filter(|_| self.trusted())
    }

    /// Caches whose credential `sha` is, as read by a look-up begun at `since`.
    pub fn cache_owner(&self, since: Generation, sha: String, device_id: &str) {
        self.cache(since, |c| c.owners.insert(sha, Arc::from(device_id)));
    }

    /// Whether `device_id` was found in the fleet, and that is still trusted.
    pub fn certified(&self, device_id: &str) -> bool {
        self.trusted() && self.certified.get(device_id).is_some()
    }

    /// Caches that a look-up begun at `since` found `device_id` in the fleet.
    pub fn cache_certified(&self, since: Generation, device_id: &str) {
        self.cache(since, |c| c.certified.insert(device_id.to_string(), ()));
    }

    /// Forgets every cached token (a token was revoked by id), here and on every replica.
    pub fn forget_tokens(&self) {
        self.change(|c| c.tokens.clear());
        self.announce(vec![TOKENS_CHANGED.to_string()]);
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
        self.trusted()
            && self.grants.get(device_id).is_some_and(|g| {
                &*g.sha256 == sha256
                    && g.at.elapsed() < std::time::Duration::from_secs(GRANT_SECONDS)
            })
    }

    /// A device was given the credential whose hash is `sha256` (registered, or given a new
    /// one): its first request needs nothing from the store.
    pub fn remember_device(&self, device_id: &str, sha256: &str) {
        let sha: Arc<str> = Arc::from(sha256);
        self.devices.insert(device_id.to_string(), sha.clone());
        self.owners.insert(sha.to_string(), Arc::from(device_id));
    }

    /// Devices' credentials or standing changed (registered again with a new one, rejected,
    /// decommissioned): forgotten here and on every replica.
    pub fn forget_devices<'a>(&self, device_ids: impl IntoIterator<Item = &'a str>) {
        let ids: Vec<&str> = device_ids.into_iter().collect();
        self.change(|c| c.forget_devices_here(&ids));
        self.announce(
            ids.iter()
                .map(|id| format!("{DEVICE_CHANGED}{id}"))
                .collect(),
        );
    }

    /// A device's credential or standing changed: forgotten here and on every replica.
    pub fn forget_device(&self, device_id: &str) {
        self.forget_devices([device_id]);
    }

    fn forget_devices_here(&self, device_ids: &[&str]) {
        if device_ids.is_empty() {
            return;
        }
        for id in device_ids {
            if let Some((_, sha)) = self.devices.remove(*id) {
                self.owners.remove(&*sha);
            }
            self.grants.remove(*id);
            self.certified.remove(*id);
        }
        // The artifact route caches owners by hash alone: a credential cached only there is
        // found by its device, in one pass whatever the number of devices.
        let gone: std::collections::HashSet<&str> = device_ids.iter().copied().collect();
        self.owners.retain(|_, owner| !gone.contains(&**owner));
    }

    fn announce(&self, keys: Vec<String>) {
        if let Some(a) = &self.announcer {
            a.credentials_changed(keys);
        }
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

/// Requests one client address may make without a credential that checks out: credentials
/// refused, sign-ins and enrollments. A factory line enrolling devices behind one address stays
/// below it; an attacker guessing tokens does not.
pub const ADDRESS_RATE: Rate = Rate {
    per_second: 20,
    burst: 100,
};

/// Sign-ins one user name may be tried with: this many at once...
pub const SIGN_INS_PER_NAME: u32 = 5;
/// ...then one every this many seconds.
pub const SIGN_IN_NAME_SECONDS: u64 = 12;
/// Sign-ins one client address may try, whatever the names: this many at once...
pub const SIGN_INS_PER_ADDRESS: u32 = 20;
/// ...then one every this many seconds.
pub const SIGN_IN_ADDRESS_SECONDS: u64 = 3;

type Limiter<K> = governor::DefaultKeyedRateLimiter<K>;

/// A request over its caller's rate: why, and when to try again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    pub message: String,
    pub retry_after_seconds: u64,
}

/// The rate limits: by operator token and by device for calls with a credential (never by
/// address: a fleet behind one gateway shares an address), and by address, and by name for
/// sign-ins, for calls without one.
pub struct RateLimits {
    tokens: Limiter<i64>,
    users: Limiter<String>,
    devices: Limiter<String>,
    addresses: Limiter<std::net::IpAddr>,
    sign_in_names: Limiter<String>,
    sign_in_addresses: Limiter<std::net::IpAddr>,
    token_rate: Rate,
    device_rate: Rate,
    address_rate: Rate,
}

fn quota(r: Rate) -> governor::Quota {
    let per_second = std::num::NonZeroU32::new(r.per_second.max(1)).expect("at least 1");
    let burst = std::num::NonZeroU32::new(r.burst.max(1)).expect("at least 1");
    governor::Quota::per_second(per_second).allow_burst(burst)
}

fn every(seconds: u64, burst: u32) -> governor::Quota {
    let burst = std::num::NonZeroU32::new(burst.max(1)).expect("at least 1");
    governor::Quota::with_period(std::time::Duration::from_secs(seconds.max(1)))
        .expect("a period of a second or more")
        .allow_burst(burst)
}

fn limited(
    result: Result<(), governor::NotUntil<governor::clock::QuantaInstant>>,
    message: impl FnOnce(u64) -> String,
) -> Result<(), Limited> {
    result.map_err(|not_until| {
        let wait = not_until.wait_time_from(governor::clock::Clock::now(
            &governor::clock::DefaultClock::default(),
        ));
        let seconds = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
        Limited {
            message: message(seconds),
            retry_after_seconds: seconds,
        }
    })
}

impl RateLimits {
    pub fn new(token_rate: Rate, device_rate: Rate, address_rate: Rate) -> RateLimits {
        RateLimits {
            tokens: governor::RateLimiter::keyed(quota(token_rate)),
            users: governor::RateLimiter::keyed(quota(token_rate)),
            devices: governor::RateLimiter::keyed(quota(device_rate)),
            addresses: governor::RateLimiter::keyed(quota(address_rate)),
            sign_in_names: governor::RateLimiter::keyed(every(
                SIGN_IN_NAME_SECONDS,
                SIGN_INS_PER_NAME,
            )),
            sign_in_addresses: governor::RateLimiter::keyed(every(
                SIGN_IN_ADDRESS_SECONDS,
                SIGN_INS_PER_ADDRESS,
            )),
            token_rate,
            device_rate,
            address_rate,
        }
    }

    /// Whether a caller at `address` may make a request without a good credential now
    /// (credentials refused, enrollments).
    pub fn check_address(&self, address: std::net::IpAddr) -> Result<(), Limited> {
        let rate = self.address_rate;
        limited(self.addresses.check_key(&address), |seconds| {
            format!(
                "rate limit: {address} may make {} requests a second without a credential ({} at once); try again in {seconds} s",
                rate.per_second, rate.burst
            )
        })
    }

    /// Whether `name` may be tried for a sign-in from `address` now; each try counts, so a
    /// password cannot be guessed faster than the limits whatever the answers.
    pub fn check_sign_in(
        &self,
        name: &str,
        address: Option<std::net::IpAddr>,
    ) -> Result<(), Limited> {
        if let Some(address) = address {
            limited(self.sign_in_addresses.check_key(&address), |seconds| {
                format!(
                    "too many sign-ins from {address}: {SIGN_INS_PER_ADDRESS} at once, then one every {SIGN_IN_ADDRESS_SECONDS} s; try again in {seconds} s"
                )
            })?;
        }
        limited(self.sign_in_names.check_key(&name.to_string()), |seconds| {
            format!(
                "too many sign-ins as `{name}`: {SIGN_INS_PER_NAME} at once, then one every {SIGN_IN_NAME_SECONDS} s; try again in {seconds} s"
            )
        })
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
        limited(result, |seconds| {
            format!(
                "rate limit: {whose} may make {} requests a second ({} at once); try again in {seconds} s",
                rate.per_second, rate.burst
            )
        })
    }

    /// Forgets keys that have been quiet long enough to be back at their full burst.
    pub fn shrink(&self) {
        self.tokens.retain_recent();
        self.users.retain_recent();
        self.devices.retain_recent();
        self.addresses.retain_recent();
        self.sign_in_names.retain_recent();
        self.sign_in_addresses.retain_recent();
    }
}

/// The most requests one operator (a token, or a signed-in user) may have in flight at once:
/// a script or a viewer firing many expensive lists together waits for its own, and leaves the
/// server's readers to everyone else.
pub const MAX_IN_FLIGHT_PER_OPERATOR: usize = 16;

/// Each operator's requests in flight.
pub struct InFlight {
    most: usize,
    counts: std::sync::Mutex<std::collections::HashMap<String, usize>>,
}

/// One request in flight, counted until dropped.
pub struct Slot<'a> {
    in_flight: &'a InFlight,
    whose: String,
}

impl InFlight {
    /// At most `most` requests in flight per operator (the server's
    /// `operator-requests-in-flight`, [`MAX_IN_FLIGHT_PER_OPERATOR`] unless set).
    pub fn new(most: usize) -> InFlight {
        InFlight {
            most: most.max(1),
            counts: Default::default(),
        }
    }

    /// A slot for a request of `p`, or a refusal when it has as many in flight as it may
    /// already; devices are not counted (one long poll each, and rate-limited).
    pub fn enter(&self, p: &Principal) -> Result<Option<Slot<'_>>, Limited> {
        if matches!(p, Principal::Device { .. }) {
            return Ok(None);
        }
        let whose = p.actor();
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let n = counts.entry(whose.clone()).or_default();
        if *n >= self.most {
            return Err(Limited {
                message: format!(
                    "{whose} has {} requests in flight already, the most one operator may: wait for their answers",
                    self.most
                ),
                retry_after_seconds: 1,
            });
        }
        *n += 1;
        Ok(Some(Slot {
            in_flight: self,
            whose,
        }))
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut counts = self
            .in_flight
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(&self.whose) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.whose);
            }
        }
    }
}

/// The expiry of a token made now for `days`.
pub fn expiry(now: UnixSeconds, days: Option<u32>) -> Option<UnixSeconds> {
    days.map(|d| UnixSeconds(now.0 + i64::from(d) * 86_400))
}
