//! The store's SQL, written once for the two databases it runs on: SQLite (one server, the
//! default) and PostgreSQL (several replicas on one database).
//!
//! Statements are written in what both accept: `?N` parameters (rewritten to `$N` for
//! PostgreSQL), `ON CONFLICT`, `RETURNING`, `CASE` rather than a boolean summed, `CAST(.. AS
//! BIGINT)` around a sum. The few that cannot be (JSON functions) pick their text by
//! [`Dialect`]. Values cross as [`Value`]: integers are `i64` on both sides (PostgreSQL's
//! columns are `BIGINT`), a boolean is an integer, text is text and bytes are bytes; a value
//! bound to a PostgreSQL parameter is converted to the type the server inferred for it.
//!
//! The PostgreSQL client is async (tokio-postgres, pooled by deadpool-postgres); its
//! connections run on a small runtime of the store's own, and the store's blocking functions
//! wait on them with a plain executor, so, as with SQLite, they may be called from any thread.

use std::error::Error as StdError;
use std::future::Future;
use std::str::FromStr;

use bytes::BytesMut;
use tokio_postgres::types::{IsNull, Type, to_sql_checked};

use crate::StoreError;

/// Which SQL a statement that cannot be written once is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A value read from or bound to a statement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value<'a> {
    Null,
    Int(i64),
    Real(f64),
    Text(&'a str),
    Blob(&'a [u8]),
}

impl Value<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Int(_) => "integer",
            Value::Real(_) => "real",
            Value::Text(_) => "text",
            Value::Blob(_) => "blob",
        }
    }
}

/// What may be bound to a parameter.
pub(crate) trait ToSql {
    fn value(&self) -> Value<'_>;
}

/// The parameters of a statement, in order: `params![a, b]` binds `?1` to `a` and `?2` to `b`.
macro_rules! params {
    () => { &[] as &[&dyn $crate::db::ToSql] };
    ($($p:expr),+ $(,)?) => { &[$(&$p as &dyn $crate::db::ToSql),+] as &[&dyn $crate::db::ToSql] };
}
pub(crate) use params;

macro_rules! int_to_sql {
    ($($t:ty),*) => {$(
        impl ToSql for $t {
            fn value(&self) -> Value<'_> {
                // Every integer the store binds fits i64 (counts, ids, times in milliseconds).
                Value::Int(i64::try_from(*self).unwrap_or(i64::MAX))
            }
        }
    )*};
}
int_to_sql!(i64, i32, u32, u16, u8, u64, usize);

impl ToSql for bool {
    fn value(&self) -> Value<'_> {
        Value::Int(i64::from(*self))
    }
}
impl ToSql for f64 {
    fn value(&self) -> Value<'_> {
        Value::Real(*self)
    }
}
impl ToSql for str {
    fn value(&self) -> Value<'_> {
        Value::Text(self)
    }
}
impl ToSql for String {
    fn value(&self) -> Value<'_> {
        Value::Text(self)
    }
}
impl ToSql for [u8] {
    fn value(&self) -> Value<'_> {
        Value::Blob(self)
    }
}
impl ToSql for Vec<u8> {
    fn value(&self) -> Value<'_> {
        Value::Blob(self)
    }
}
impl<T: ToSql + ?Sized> ToSql for &T {
    fn value(&self) -> Value<'_> {
        (**self).value()
    }
}
impl<T: ToSql> ToSql for Option<T> {
    fn value(&self) -> Value<'_> {
        match self {
            Some(v) => v.value(),
            None => Value::Null,
        }
    }
}

/// What a column may be read as.
pub(crate) trait FromSql: Sized {
    fn from_value(v: Value<'_>) -> Result<Self, String>;
}

fn mismatch<T>(want: &str, v: Value<'_>) -> Result<T, String> {
    Err(format!("{} where {want} was expected", v.kind()))
}

macro_rules! int_from_sql {
    ($($t:ty),*) => {$(
        impl FromSql for $t {
            fn from_value(v: Value<'_>) -> Result<Self, String> {
                match v {
                    Value::Int(i) => <$t>::try_from(i)
                        .map_err(|_| format!("{i} does not fit {}", stringify!($t))),
                    other => mismatch("an integer", other),
                }
            }
        }
    )*};
}
int_from_sql!(i64, i32, u32, u16, u8, u64, usize);

impl FromSql for bool {
    fn from_value(v: Value<'_>) -> Result<Self, String> {
        match v {
            Value::Int(i) => Ok(i != 0),
            other => mismatch("a boolean", other),
        }
    }
}
impl FromSql for f64 {
    fn from_value(v: Value<'_>) -> Result<Self, String> {
        match v {
            Value::Real(r) => Ok(r),
            // Integers stored in a real column, as SQLite may.
            Value::Int(i) => Ok(i as f64),
            other => mismatch("a number", other),
        }
    }
}
impl FromSql for String {
    fn from_value(v: Value<'_>) -> Result<Self, String> {
        match v {
            Value::Text(s) => Ok(s.to_owned()),
            other => mismatch("text", other),
        }
    }
}
impl FromSql for Vec<u8> {
    fn from_value(v: Value<'_>) -> Result<Self, String> {
        match v {
            Value::Blob(b) => Ok(b.to_vec()),
            other => mismatch("bytes", other),
        }
    }
}
impl<T: FromSql> FromSql for Option<T> {
    fn from_value(v: Value<'_>) -> Result<Self, String> {
        match v {
            Value::Null => Ok(None),
            v => T::from_value(v).map(Some),
        }
    }
}

/// One row of a query's result.
pub(crate) struct Row<'r>(RowInner<'r>);

enum RowInner<'r> {
    Sqlite(&'r rusqlite::Row<'r>),
    Postgres(&'r tokio_postgres::Row),
}

impl Row<'_> {
    /// Column `i`, as `T`; a value of another type is a [`StoreError::Corrupt`] naming it.
    pub fn get<T: FromSql>(&self, i: usize) -> Result<T, StoreError> {
        T::from_value(self.value(i)?).map_err(|e| StoreError::Corrupt(format!("column {i}: {e}")))
    }

    /// Column `i` as it is stored.
    pub fn value(&self, i: usize) -> Result<Value<'_>, StoreError> {
        match &self.0 {
            RowInner::Sqlite(r) => {
                use rusqlite::types::ValueRef as V;
                Ok(match r.get_ref(i)? {
                    V::Null => Value::Null,
                    V::Integer(i) => Value::Int(i),
                    V::Real(f) => Value::Real(f),
                    V::Text(t) => Value::Text(std::str::from_utf8(t).map_err(|e| {
                        StoreError::Corrupt(format!("column {i}: text that is not UTF-8: {e}"))
                    })?),
                    V::Blob(b) => Value::Blob(b),
                })
            }
            RowInner::Postgres(r) => pg_value(r, i),
        }
    }
}

fn pg_value(r: &tokio_postgres::Row, i: usize) -> Result<Value<'_>, StoreError> {
    let ty = r
        .columns()
        .get(i)
        .ok_or_else(|| StoreError::Corrupt(format!("no column {i}")))?
        .type_()
        .clone();
    fn or_null<T>(v: Option<T>, f: impl FnOnce(T) -> Value<'static>) -> Value<'static> {
        v.map_or(Value::Null, f)
    }
    Ok(match ty {
        Type::INT8 => or_null(r.try_get::<_, Option<i64>>(i)?, Value::Int),
        Type::INT4 => or_null(r.try_get::<_, Option<i32>>(i)?, |v| Value::Int(v.into())),
        Type::INT2 => or_null(r.try_get::<_, Option<i16>>(i)?, |v| Value::Int(v.into())),
        Type::BOOL => or_null(r.try_get::<_, Option<bool>>(i)?, |v| Value::Int(v.into())),
        Type::FLOAT8 => or_null(r.try_get::<_, Option<f64>>(i)?, Value::Real),
        Type::FLOAT4 => or_null(r.try_get::<_, Option<f32>>(i)?, |v| Value::Real(v.into())),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => r
            .try_get::<_, Option<&str>>(i)?
            .map_or(Value::Null, Value::Text),
        Type::BYTEA => r
            .try_get::<_, Option<&[u8]>>(i)?
            .map_or(Value::Null, Value::Blob),
        other => {
            return Err(StoreError::Corrupt(format!(
                "column {i} is of type {other}, which the store does not read"
            )));
        }
    })
}

impl tokio_postgres::types::ToSql for Value<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match (*self, ty) {
            (Value::Null, _) => Ok(IsNull::Yes),
            (Value::Int(v), &Type::INT8) => v.to_sql(ty, out),
            (Value::Int(v), &Type::INT4) => i32::try_from(v)?.to_sql(ty, out),
            (Value::Int(v), &Type::INT2) => i16::try_from(v)?.to_sql(ty, out),
            (Value::Int(v), &Type::BOOL) => (v != 0).to_sql(ty, out),
            (Value::Int(v), &Type::FLOAT8) => (v as f64).to_sql(ty, out),
            (Value::Int(v), &Type::TEXT | &Type::VARCHAR) => v.to_string().to_sql(ty, out),
            (Value::Real(v), &Type::FLOAT8) => v.to_sql(ty, out),
            (Value::Real(v), &Type::FLOAT4) => (v as f32).to_sql(ty, out),
            (Value::Text(s), &Type::TEXT | &Type::VARCHAR | &Type::BPCHAR | &Type::NAME) => {
                s.to_sql(ty, out)
            }
            (Value::Text(s), &Type::UNKNOWN) => s.to_sql(&Type::TEXT, out),
            (Value::Blob(b), &Type::BYTEA) => b.to_sql(ty, out),
            (v, ty) => {
                Err(format!("a {} cannot be bound to a parameter of type {ty}", v.kind()).into())
            }
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

impl rusqlite::ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::ValueRef as V;
        Ok(rusqlite::types::ToSqlOutput::Borrowed(match *self {
            Value::Null => V::Null,
            Value::Int(i) => V::Integer(i),
            Value::Real(f) => V::Real(f),
            Value::Text(s) => V::Text(s.as_bytes()),
            Value::Blob(b) => V::Blob(b),
        }))
    }
}

/// `?N` parameters as PostgreSQL spells them, `$N`; a `?` inside a quoted literal is left.
pub(crate) fn postgres_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut quoted = false;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' {
            quoted = !quoted;
        }
        if c == '?' && !quoted && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

/// Where statements run: a connection, borrowed or held, and whether a transaction is open on
/// it. A transaction not committed is rolled back when its `Tx` is dropped, so an early return
/// or an error keeps nothing of it.
pub(crate) struct Tx<'c> {
    conn: Held<'c>,
    open: bool,
}

enum Held<'c> {
    Sqlite(std::sync::MutexGuard<'c, rusqlite::Connection>),
    PostgresBorrowed(&'c deadpool_postgres::ClientWrapper),
    /// Boxed: a pooled client is some 200 bytes, and a `Tx` is moved around.
    PostgresPooled(Box<deadpool_postgres::Client>),
}

/// A connection as statements use it.
#[derive(Clone, Copy)]
enum Conn<'a> {
    Sqlite(&'a rusqlite::Connection),
    Postgres(&'a deadpool_postgres::ClientWrapper),
}

impl<'c> Tx<'c> {
    /// Statements on `client`, in whatever transaction its owner has open.
    pub(crate) fn postgres(client: &'c deadpool_postgres::ClientWrapper) -> Tx<'c> {
        Tx {
            conn: Held::PostgresBorrowed(client),
            open: false,
        }
    }

    /// Statements on a connection held until the `Tx` is dropped, outside any transaction.
    pub(crate) fn held_sqlite(conn: std::sync::MutexGuard<'c, rusqlite::Connection>) -> Tx<'c> {
        Tx {
            conn: Held::Sqlite(conn),
            open: false,
        }
    }

    /// As [`Tx::held_sqlite`], for a pooled PostgreSQL connection.
    pub(crate) fn held_postgres(client: deadpool_postgres::Client) -> Tx<'c> {
        Tx {
            conn: Held::PostgresPooled(Box::new(client)),
            open: false,
        }
    }

    /// Opens a transaction: `BEGIN`, then `then` (PostgreSQL's lock of the store's writes).
    pub(crate) fn begin(mut self, then: Option<&str>) -> Result<Tx<'c>, StoreError> {
        self.batch("BEGIN")?;
        self.open = true;
        if let Some(sql) = then {
            self.batch(sql)?;
        }
        Ok(self)
    }

    /// Commits the transaction.
    pub fn commit(mut self) -> Result<(), StoreError> {
        self.open = false;
        self.batch("COMMIT")
    }

    fn conn(&self) -> Conn<'_> {
        match &self.conn {
            Held::Sqlite(c) => Conn::Sqlite(c),
            Held::PostgresBorrowed(c) => Conn::Postgres(c),
            Held::PostgresPooled(c) => Conn::Postgres(c),
        }
    }

    pub fn dialect(&self) -> Dialect {
        match self.conn() {
            Conn::Sqlite(_) => Dialect::Sqlite,
            Conn::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Runs a statement; returns how many rows it changed.
    pub fn execute(&self, sql: &str, params: &[&dyn ToSql]) -> Result<usize, StoreError> {
        let values: Vec<Value<'_>> = params.iter().map(|p| p.value()).collect();
        match self.conn() {
            Conn::Sqlite(conn) => Ok(conn
                .prepare_cached(sql)?
                .execute(rusqlite::params_from_iter(values.iter()))?),
            Conn::Postgres(client) => {
                let stmt = prepared(client, sql)?;
                let n = wait(client.execute(&stmt, &pg_params(&values)))?;
                Ok(usize::try_from(n).unwrap_or(usize::MAX))
            }
        }
    }

    /// The rows of a query, each through `f`.
    pub fn query_map<T>(
        &self,
        sql: &str,
        params: &[&dyn ToSql],
        mut f: impl FnMut(&Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        self.for_each_row(sql, params, |r| {
            out.push(f(r)?);
            Ok(true)
        })?;
        Ok(out)
    }

    /// The first row of a query through `f`, `None` when there is none.
    pub fn query_opt<T>(
        &self,
        sql: &str,
        params: &[&dyn ToSql],
        f: impl FnOnce(&Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let mut f = Some(f);
        let mut first = None;
        self.for_each_row(sql, params, |r| {
            if let Some(f) = f.take() {
                first = Some(f(r)?);
            }
            Ok(false)
        })?;
        Ok(first)
    }

    /// Runs a query and hands its rows to `f` in order, while `f` answers that it wants more.
    fn for_each_row(
        &self,
        sql: &str,
        params: &[&dyn ToSql],
        mut f: impl FnMut(&Row<'_>) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let values: Vec<Value<'_>> = params.iter().map(|p| p.value()).collect();
        match self.conn() {
            Conn::Sqlite(conn) => {
                let mut stmt = conn.prepare_cached(sql)?;
                let mut rows = stmt.query(rusqlite::params_from_iter(values.iter()))?;
                while let Some(r) = rows.next()? {
                    if !f(&Row(RowInner::Sqlite(r)))? {
                        break;
                    }
                }
            }
            Conn::Postgres(client) => {
                let stmt = prepared(client, sql)?;
                for r in &wait(client.query(&stmt, &pg_params(&values)))? {
                    if !f(&Row(RowInner::Postgres(r)))? {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// The first row of a query through `f`; a query that returns none is an error naming
    /// the statement, for a row the store itself relies on being there.
    pub fn query_row<T>(
        &self,
        sql: &str,
        params: &[&dyn ToSql],
        f: impl FnOnce(&Row<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.query_opt(sql, params, f)?
            .ok_or_else(|| StoreError::NotFound(format!("no row for: {}", first_line(sql))))
    }

    /// Runs statements with no parameters, separated by `;`.
    pub fn batch(&self, sql: &str) -> Result<(), StoreError> {
        match self.conn() {
            Conn::Sqlite(conn) => Ok(conn.execute_batch(sql)?),
            Conn::Postgres(client) => Ok(wait(client.batch_execute(sql))?),
        }
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if self.open {
            self.open = false;
            if let Err(e) = self.batch("ROLLBACK") {
                tracing::warn!(error = %e, "rolling back a transaction failed");
            }
        }
    }
}

/// `sql` prepared on `client`, from the connection's cache after the first time.
fn prepared(
    client: &deadpool_postgres::ClientWrapper,
    sql: &str,
) -> Result<tokio_postgres::Statement, StoreError> {
    Ok(wait(client.prepare_cached(&postgres_sql(sql)))?)
}

fn first_line(sql: &str) -> &str {
    sql.trim().lines().next().unwrap_or_default()
}

fn pg_params<'v>(values: &'v [Value<'v>]) -> Vec<&'v (dyn tokio_postgres::types::ToSql + Sync)> {
    values
        .iter()
        .map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect()
}

/// Waits for a PostgreSQL client future on the calling thread. The client's futures only talk
/// to the connection task over channels, so no runtime is needed here; the connections run on
/// [`Postgres`]'s runtime.
pub(crate) fn wait<F: Future>(f: F) -> F::Output {
    futures_executor::block_on(f)
}

/// A PostgreSQL database: a pool of connections, and the runtime they run on.
pub(crate) struct Postgres {
    runtime: Option<tokio::runtime::Runtime>,
    pool: deadpool_postgres::Pool,
    /// For connections of the store's own outside the pool (the doorbell's `LISTEN`).
    pub(crate) config: tokio_postgres::Config,
    /// The database's address with any password left out, for messages.
    pub(crate) shown: String,
}

/// The most connections one replica holds to PostgreSQL.
pub const POOL_SIZE: usize = 16;

impl Postgres {
    /// Connects to `url` (`postgres://user@host:port/dbname`, or libpq's `key=value` form) and
    /// checks the connection works.
    pub(crate) fn connect(url: &str) -> Result<Postgres, StoreError> {
        let config = tokio_postgres::Config::from_str(url)
            .map_err(|e| StoreError::Invalid(format!("database URL: {e}")))?;
        let shown = shown(&config);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("hotswap-postgres")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Unavailable(format!("postgres runtime: {e}")))?;
        let manager = deadpool_postgres::Manager::from_config(
            config.clone(),
            tokio_postgres::NoTls,
            deadpool_postgres::ManagerConfig {
                recycling_method: deadpool_postgres::RecyclingMethod::Fast,
            },
        );
        let pool = deadpool_postgres::Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Unavailable(format!("postgres pool: {e}")))?;
        let db = Postgres {
            runtime: Some(runtime),
            pool,
            config,
            shown,
        };
        drop(db.client()?);
        Ok(db)
    }

    /// A connection from the pool, opened if none is free.
    pub(crate) fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        let _in_runtime = self.runtime.as_ref().map(|r| r.enter());
        wait(self.pool.get())
            .map_err(|e| StoreError::Unavailable(format!("database {}: {e}", self.shown)))
    }
}

impl Postgres {
    /// The runtime the connections run on, for the store's own tasks.
    pub(crate) fn runtime(&self) -> &tokio::runtime::Handle {
        self.runtime
            .as_ref()
            .expect("the runtime lives as long as the store")
            .handle()
    }

    /// The pool, for the store's own tasks.
    pub(crate) fn pool(&self) -> &deadpool_postgres::Pool {
        &self.pool
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Dropping a runtime waits for its threads, which an async caller may not do.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

fn shown(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_default();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{}@{host}:{port}/{}",
        config.get_user().unwrap_or_default(),
        config.get_dbname().unwrap_or_default()
    )
}

/// A PostgreSQL error as people read it: the server's message and detail, not only its kind.
pub(crate) fn message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{}: {detail} ({})", db.message(), db.code().code()),
            None => format!("{} ({})", db.message(), db.code().code()),
        },
        None => match std::error::Error::source(e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    }
}

/// A constraint the database kept (two replicas registering the same name at once) is a
/// conflict, as the store's own checks are; a lost connection, a serialization failure or a
/// server shutting down is a moment's unavailability, nothing of the change kept; anything
/// else is the database's failure.
impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> StoreError {
        let class = e.code().map(|c| &c.code()[..2]);
        match class {
            Some("23") => StoreError::Conflict(message(&e)),
            Some("40" | "08" | "57") => {
                StoreError::Unavailable(format!("database: {}", message(&e)))
            }
            None if e.is_closed() => StoreError::Unavailable(format!("database: {}", message(&e))),
            _ => StoreError::Postgres(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::postgres_sql;

    #[test]
    fn numbered_parameters_are_spelled_for_postgres_outside_literals() {
        assert_eq!(
            postgres_sql("SELECT '?1', x FROM t WHERE a = ?1 AND b IN (?2, ?10) AND c = '?'"),
            "SELECT '?1', x FROM t WHERE a = $1 AND b IN ($2, $10) AND c = '?'"
        );
    }
}
