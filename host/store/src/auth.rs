//! Operator API tokens and the audit log. A token is kept as the SHA-256 of its secret, never
//! the secret; the audit log only grows (triggers refuse to change or remove a row).

use hotswap_protocol::{
    AuditEntry, AuditPage, AuditQuery, Role, Spelling, TokenInfo, UnixSeconds, UserInfo,
};
use rusqlite::{OptionalExtension, Row, params};

use crate::{Store, StoreError, decode};

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

/// An entry to append to the audit log.
#[derive(Debug, Clone)]
pub struct NewAudit {
    pub actor: String,
    pub token_id: Option<i64>,
    pub source: Option<String>,
    pub action: String,
    pub object: Option<String>,
    pub status: u16,
}

/// The most audit entries one page holds.
pub const MAX_AUDIT_PAGE: usize = 1000;

const TOKEN_COLUMNS: &str =
    "id, name, role, hint, created_by, created_at, expires_at, revoked_at, last_used_at";

fn token_from_row(r: &Row<'_>) -> rusqlite::Result<TokenInfo> {
    let seconds = |i: usize| -> rusqlite::Result<Option<UnixSeconds>> {
        Ok(r.get::<_, Option<i64>>(i)?.map(UnixSeconds))
    };
    Ok(TokenInfo {
        id: r.get(0)?,
        name: r.get(1)?,
        role: decode(2, &r.get::<_, String>(2)?)?,
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
        let conn = self.conn();
        conn.execute(
            "INSERT INTO api_tokens (name, role, sha256, hint, created_by, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                t.name,
                t.role.as_str(),
                t.sha256,
                t.hint,
                t.created_by,
                self.clock.now().seconds().0,
                t.expires_at.map(|e| e.0)
            ],
        )?;
        let id = conn.last_insert_rowid();
        drop(conn);
        self.token(id)
    }

    pub fn token(&self, id: i64) -> Result<TokenInfo, StoreError> {
        self.reader()
            .query_row(
                &format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = ?1"),
                [id],
                token_from_row,
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("no token {id}")))
    }

    /// The token whose secret hashes to `sha256`, revoked and expired ones included (the
    /// caller says why it is refused).
    pub fn token_by_hash(&self, sha256: &str) -> Result<Option<TokenInfo>, StoreError> {
        Ok(self
            .reader()
            .prepare_cached(&format!(
                "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE sha256 = ?1"
            ))?
            .query_row([sha256], token_from_row)
            .optional()?)
    }

    /// Every token, newest first.
    pub fn list_tokens(&self) -> Result<Vec<TokenInfo>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY id DESC"
        ))?;
        let rows = stmt.query_map([], token_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Revokes a token; it fails from its next request on. Revoking it again changes nothing.
    pub fn revoke_token(&self, id: i64) -> Result<TokenInfo, StoreError> {
        let changed = self.conn().execute(
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
        self.conn().execute(
            "UPDATE api_tokens SET last_used_at = ?2 WHERE id = ?1 AND (last_used_at IS NULL OR last_used_at < ?2 - 60)",
            params![id, now],
        )?;
        Ok(())
    }

    /// How many tokens were ever made: none on a new data directory.
    pub fn token_count(&self) -> Result<i64, StoreError> {
        Ok(self
            .reader()
            .query_row("SELECT COUNT(*) FROM api_tokens", [], |r| r.get(0))?)
    }

    /// Appends to the audit log, durably, before the answer it records is sent.
    pub async fn append_audit(&self, e: NewAudit) -> Result<(), StoreError> {
        let at = self.clock.now().seconds().0;
        self.writer
            .write(move |tx| {
                tx.prepare_cached(
                    "INSERT INTO audit (at, actor, token_id, source, action, object, status)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?
                .execute(params![
                    at, e.actor, e.token_id, e.source, e.action, e.object, e.status
                ])?;
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
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(
            "SELECT id, at, actor, token_id, source, action, object, status FROM audit
             WHERE (?1 IS NULL OR actor = ?1)
               AND (?2 IS NULL OR instr(action, ?2) > 0)
               AND (?3 IS NULL OR instr(object, ?3) > 0)
               AND (?4 IS NULL OR at >= ?4)
               AND (?5 IS NULL OR at < ?5)
               AND (?6 IS NULL OR id < ?6)
             ORDER BY id DESC LIMIT ?7",
        )?;
        let rows = stmt.query_map(
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
                })
            },
        )?;
        let entries: Vec<AuditEntry> = rows.collect::<Result<_, _>>()?;
        let next = (entries.len() == limit)
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
        let inserted = self.conn().execute(
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
        Ok(self
            .reader()
            .prepare_cached(
                "SELECT name, role, created_at, disabled, password_hash FROM users WHERE name = ?1",
            )?
            .query_row([name], |r| {
                Ok(UserRow {
                    info: UserInfo {
                        name: r.get(0)?,
                        role: decode(1, &r.get::<_, String>(1)?)?,
                        created_at: UnixSeconds(r.get(2)?),
                        disabled: r.get(3)?,
                    },
                    password_hash: r.get(4)?,
                })
            })
            .optional()?)
    }

    pub fn list_users(&self) -> Result<Vec<UserInfo>, StoreError> {
        let conn = self.reader();
        let mut stmt =
            conn.prepare("SELECT name, role, created_at, disabled FROM users ORDER BY name")?;
        let rows = stmt.query_map([], |r| {
            Ok(UserInfo {
                name: r.get(0)?,
                role: decode(1, &r.get::<_, String>(1)?)?,
                created_at: UnixSeconds(r.get(2)?),
                disabled: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Disables a user: their sessions fail from the next request on.
    pub fn disable_user(&self, name: &str) -> Result<UserInfo, StoreError> {
        let changed = self
            .conn()
            .execute("UPDATE users SET disabled = 1 WHERE name = ?1", [name])?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!("no user `{name}`")));
        }
        Ok(self
            .user(name)?
            .ok_or_else(|| StoreError::NotFound(format!("no user `{name}`")))?
            .info)
    }
}
