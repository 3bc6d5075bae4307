//! Operator API tokens and the audit log. A token is kept as the SHA-256 of its secret, never
//! the secret; the audit log only grows (triggers refuse to change or remove a row).

use hotswap_protocol::names::cut;

use crate::db::{Dialect, Row, params};
use crate::{Store, StoreError, decode};
use hotswap_protocol::{
    AuditEntry, AuditPage, AuditQuery, Role, Spelling, TokenInfo, UnixSeconds, UserInfo,
};

/// A token to store.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub name: String,
    pub role: Role,
    /// SHA-256 of the secret, hex.
    pub sha256: String,
    pub hint: String,
    pub created_by: String,
    pub expires_at: Option<UnixSeconds>,
}

/// An entry to append to the audit log. Each text is cut to [`AUDIT_FIELD_MAX_BYTES`] when
/// stored, so no request can make the log keep more than that of what it sent.
#[derive(Debug, Clone)]
pub struct NewAudit {
    pub actor: String,
    pub token_id: Option<i64>,
    pub source: Option<String>,
    pub action: String,
    pub object: Option<String>,
    pub status: u16,
    /// How many like requests the entry stands for (anonymous refusals are counted, not
    /// written one by one).
    pub count: u32,
}

impl NewAudit {
    /// An entry of one request that names no token and no object: a sign-in, an enrollment.
    pub fn of(actor: String, source: Option<std::net::IpAddr>, action: &str, status: u16) -> Self {
        NewAudit {
            actor,
            token_id: None,
            source: source.map(|a| a.to_string()),
            action: action.to_string(),
            object: None,
            status,
            count: 1,
        }
    }
}

/// The most bytes of each text an audit entry keeps (actor, source, action, object); longer
/// ones are cut at a character boundary and end in `…`.
pub const AUDIT_FIELD_MAX_BYTES: usize = 256;

/// The most bytes of entries one page of the audit log holds (as stored; the JSON adds its
/// field names), whatever its `limit`.
pub const AUDIT_PAGE_MAX_BYTES: usize = 256 * 1024;

/// A page of the audit log; `strpos` is `instr` in SQLite.
const AUDIT_PAGE: &str =
    "SELECT id, at, actor, token_id, source, action, object, status, count FROM audit
     WHERE (CAST(?1 AS TEXT) IS NULL OR actor = ?1)
       AND (CAST(?2 AS TEXT) IS NULL OR strpos(action, ?2) > 0)
       AND (CAST(?3 AS TEXT) IS NULL OR strpos(object, ?3) > 0)
       AND (CAST(?4 AS BIGINT) IS NULL OR at >= ?4)
       AND (CAST(?5 AS BIGINT) IS NULL OR at < ?5)
       AND (CAST(?6 AS BIGINT) IS NULL OR id < ?6)
     ORDER BY id DESC LIMIT ?7";

/// The most audit entries one page holds.
pub const MAX_AUDIT_PAGE: usize = 1000;

const TOKEN_COLUMNS: &str =
    "id, name, role, hint, created_by, created_at, expires_at, revoked_at, last_used_at";

fn token_from_row(r: &Row<'_>) -> Result<TokenInfo, StoreError> {
    let seconds = |i: usize| -> Result<Option<UnixSeconds>, StoreError> {
        Ok(r.get::<Option<i64>>(i)?.map(UnixSeconds))
    };
    Ok(TokenInfo {
        id: r.get(0)?,
        name: r.get(1)?,
        role: decode(2, &r.get::<String>(2)?)?,
        hint: r.get(3)?,
        created_by: r.get(4)?,
        created_at: UnixSeconds(r.get(5)?),
        expires_at: seconds(6)?,
        revoked_at: seconds(7)?,
        last_used_at: seconds(8)?,
    })
}

impl Store {
    pub fn add_token(&self, t: &NewToken) -> Result<TokenInfo, StoreError> {
        let id = self
            .insert_token(t, "")?
            .expect("a token without a condition is inserted");
        self.token(id)
    }

    /// Stores the first token, unless a token exists: of replicas starting together on a new
    /// database, one makes the administrator token. Whether this one was stored.
    pub fn add_first_token(&self, t: &NewToken) -> Result<bool, StoreError> {
        Ok(self
            .insert_token(t, "WHERE NOT EXISTS (SELECT 1 FROM api_tokens)")?
            .is_some())
    }

    /// Inserts `t` if `condition` holds; its id.
    fn insert_token(&self, t: &NewToken, condition: &str) -> Result<Option<i64>, StoreError> {
        let tx = self.begin()?;
        let id = tx.query_opt(
            &format!(
                "INSERT INTO api_tokens (name, role, sha256, hint, created_by, created_at, expires_at)
                 SELECT CAST(?1 AS TEXT), CAST(?2 AS TEXT), CAST(?3 AS TEXT), CAST(?4 AS TEXT),
                        CAST(?5 AS TEXT), CAST(?6 AS BIGINT), CAST(?7 AS BIGINT) {condition}
                 RETURNING id"
            ),
            params![
                t.name,
                t.role.as_str(),
                t.sha256,
                t.hint,
                t.created_by,
                self.clock.now().seconds().0,
                t.expires_at.map(|e| e.0)
            ],
            |r| r.get(0),
        )?;
        tx.commit()?;
        Ok(id)
    }

    /// The secret `name` every replica shares, made by `fresh` the first time any asks;
    /// `None` on SQLite, whose one server keeps its secrets as files.
    pub fn shared_secret(
        &self,
        name: &str,
        fresh: impl FnOnce() -> Vec<u8>,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        if self.dialect() == Dialect::Sqlite {
            return Ok(None);
        }
        let tx = self.begin()?;
        tx.execute(
            "INSERT INTO secrets (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
            params![name, fresh()],
        )?;
        let value = tx.query_row(
            "SELECT value FROM secrets WHERE name = ?1",
            params![name],
            |r| r.get::<Vec<u8>>(0),
        )?;
        tx.commit()?;
        Ok(Some(value))
    }

    pub fn token(&self, id: i64) -> Result<TokenInfo, StoreError> {
        self.reader()?
            .query_opt(
                &format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = ?1"),
                params![id],
                token_from_row,
            )?
            .ok_or_else(|| StoreError::NotFound(format!("no token {id}")))
    }

    /// The token whose secret hashes to `sha256`, revoked and expired ones included (the
    /// caller says why it is refused).
    pub fn token_by_hash(&self, sha256: &str) -> Result<Option<TokenInfo>, StoreError> {
        self.reader()?.query_opt(
            &format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE sha256 = ?1"),
            params![sha256],
            token_from_row,
        )
    }

    /// Every token, newest first.
    pub fn list_tokens(&self) -> Result<Vec<TokenInfo>, StoreError> {
        self.reader()?.query_map(
            &format!("SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY id DESC"),
            params![],
            token_from_row,
        )
    }

    /// Revokes a token; it fails from its next request on. Revoking it again changes nothing.
    pub fn revoke_token(&self, id: i64) -> Result<TokenInfo, StoreError> {
        let changed = self.conn()?.execute(
            "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1",
            params![id, self.clock.now().seconds().0],
        )?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!("no token {id}")));
        }
        self.token(id)
    }

    /// Records that a token was used, at most once a minute per token.
    pub fn token_used(&self, id: i64) -> Result<(), StoreError> {
        let now = self.clock.now().seconds().0;
        self.conn()?.execute(
            "UPDATE api_tokens SET last_used_at = ?2 WHERE id = ?1 AND (last_used_at IS NULL OR last_used_at < ?2 - 60)",
            params![id, now],
        )?;
        Ok(())
    }

    /// How many tokens were ever made: none on a new data directory.
    pub fn token_count(&self) -> Result<i64, StoreError> {
        self.reader()?
            .query_row("SELECT COUNT(*) FROM api_tokens", params![], |r| r.get(0))
    }

    /// Appends to the audit log, durably, before the answer it records is sent.
    pub async fn append_audit(&self, e: NewAudit) -> Result<(), StoreError> {
        let at = self.clock.now().seconds().0;
        let field = |t: &str| cut(t, AUDIT_FIELD_MAX_BYTES);
        let actor = field(&e.actor);
        let source = e.source.as_deref().map(field);
        let action = field(&e.action);
        let object = e.object.as_deref().map(field);
        self.writer
            .write(crate::writer::key(&actor), move |tx| {
                tx.execute(
                    "INSERT INTO audit (at, actor, token_id, source, action, object, status, count)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        at,
                        actor,
                        e.token_id,
                        source,
                        action,
                        object,
                        e.status,
                        e.count.max(1)
                    ],
                )?;
                Ok(())
            })
            .await
    }

    /// A page of the audit log, newest first, narrowed by `q`.
    pub fn audit(&self, q: &AuditQuery) -> Result<AuditPage, StoreError> {
        let limit = q.limit.unwrap_or(100);
        if !(1..=MAX_AUDIT_PAGE).contains(&limit) {
            return Err(StoreError::Invalid(format!(
                "`limit` must be from 1 to {MAX_AUDIT_PAGE}, found {limit}"
            )));
        }
        let conn = self.reader()?;
        let sql = match conn.dialect() {
            Dialect::Sqlite => AUDIT_PAGE.replace("strpos", "instr"),
            Dialect::Postgres => AUDIT_PAGE.to_string(),
        };
        let mut entries = conn.query_map(
            &sql,
            params![
                q.actor,
                q.action,
                q.object,
                q.since,
                q.until,
                q.before,
                limit as i64
            ],
            |r| {
                Ok(AuditEntry {
                    id: r.get(0)?,
                    at: UnixSeconds(r.get(1)?),
                    actor: r.get(2)?,
                    token_id: r.get(3)?,
                    source: r.get(4)?,
                    action: r.get(5)?,
                    object: r.get(6)?,
                    status: r.get(7)?,
                    count: r.get(8)?,
                })
            },
        )?;
        // Bounded in bytes too: a page ends early, with the place to go on from, once its
        // entries hold AUDIT_PAGE_MAX_BYTES.
        let mut bytes = 0;
        let full = entries.iter().position(|e| {
            bytes += e.actor.len()
                + e.action.len()
                + e.source.as_ref().map_or(0, String::len)
                + e.object.as_ref().map_or(0, String::len)
                + 32;
            bytes > AUDIT_PAGE_MAX_BYTES
        });
        let cut_short = full.map(|at| entries.truncate(at.max(1))).is_some();
        let next = (cut_short || entries.len() == limit)
            .then(|| entries.last().map(|e| e.id))
            .flatten();
        Ok(AuditPage { entries, next })
    }
}

/// A user as sign-in reads it.
#[derive(Debug, Clone)]
pub struct UserRow {
    pub info: UserInfo,
    /// The argon2 hash of the password (PHC string).
    pub password_hash: String,
}

impl Store {
    /// Adds a user; a taken name is a conflict.
    pub fn add_user(
        &self,
        name: &str,
        role: Role,
        password_hash: &str,
    ) -> Result<UserInfo, StoreError> {
        let inserted = self.conn()?.execute(
            "INSERT INTO users (name, role, password_hash, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (name) DO NOTHING",
            params![
                name,
                role.as_str(),
                password_hash,
                self.clock.now().seconds().0
            ],
        )?;
        if inserted == 0 {
            return Err(StoreError::Conflict(format!(
                "user `{name}` exists already"
            )));
        }
        Ok(self
            .user(name)?
            .ok_or_else(|| StoreError::NotFound(format!("no user `{name}`")))?
            .info)
    }

    pub fn user(&self, name: &str) -> Result<Option<UserRow>, StoreError> {
        self.reader()?.query_opt(
            "SELECT name, role, created_at, disabled, password_hash FROM users WHERE name = ?1",
            params![name],
            |r| {
                Ok(UserRow {
                    info: UserInfo {
                        name: r.get(0)?,
                        role: decode(1, &r.get::<String>(1)?)?,
                        created_at: UnixSeconds(r.get(2)?),
                        disabled: r.get(3)?,
                    },
                    password_hash: r.get(4)?,
                })
            },
        )
    }

    pub fn list_users(&self) -> Result<Vec<UserInfo>, StoreError> {
        self.reader()?.query_map(
            "SELECT name, role, created_at, disabled FROM users ORDER BY name",
            params![],
            |r| {
                Ok(UserInfo {
                    name: r.get(0)?,
                    role: decode(1, &r.get::<String>(1)?)?,
                    created_at: UnixSeconds(r.get(2)?),
                    disabled: r.get(3)?,
                })
            },
        )
    }

    /// Sets a user's password (its argon2 hash).
    pub fn set_password(&self, name: &str, password_hash: &str) -> Result<(), StoreError> {
        let changed = self.conn()?.execute(
            "UPDATE users SET password_hash = ?2 WHERE name = ?1",
            params![name, password_hash],
        )?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!("no user `{name}`")));
        }
        Ok(())
    }

    /// Revokes every token `created_by` made that is not revoked yet; how many.
    pub fn revoke_tokens_made_by(&self, created_by: &str) -> Result<usize, StoreError> {
        self.conn()?.execute(
            "UPDATE api_tokens SET revoked_at = ?2 WHERE created_by = ?1 AND revoked_at IS NULL",
            params![created_by, self.clock.now().seconds().0],
        )
    }

    /// Disables a user: their sessions fail from the next request on.
    pub fn disable_user(&self, name: &str) -> Result<UserInfo, StoreError> {
        let changed = self.conn()?.execute(
            "UPDATE users SET disabled = 1 WHERE name = ?1",
            params![name],
        )?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!("no user `{name}`")));
        }
        Ok(self
            .user(name)?
            .ok_or_else(|| StoreError::NotFound(format!("no user `{name}`")))?
            .info)
    }
}
