//! A database of its own for each test, on either backend: SQLite under a temporary
//! directory, or a PostgreSQL database created for the test and dropped after it. The
//! PostgreSQL server is named by [`TEST_POSTGRES_VARIABLE`] (a URL whose database the test
//! databases are created from), [`DEFAULT_TEST_POSTGRES`] when unset.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::db::{Postgres, Tx};
use crate::{Clock, Database, Dialect, Store, StoreError};

/// The variable naming the PostgreSQL server tests create their databases on.
pub const TEST_POSTGRES_VARIABLE: &str = "HOTSWAP_TEST_POSTGRES";

/// The server tests use when [`TEST_POSTGRES_VARIABLE`] is unset: the local one, trusted.
pub const DEFAULT_TEST_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database for one test, and a directory for its files; both go when it is dropped.
pub struct TestDatabase {
    pub database: Database,
    dir: tempfile::TempDir,
    /// The PostgreSQL database made for it, dropped with it.
    _made: Option<CreatedDatabase>,
}

impl TestDatabase {
    pub fn new(dialect: Dialect) -> TestDatabase {
        match dialect {
            Dialect::Sqlite => TestDatabase::sqlite(),
            Dialect::Postgres => TestDatabase::postgres(),
        }
    }

    pub fn sqlite() -> TestDatabase {
        TestDatabase {
            database: Database::Sqlite,
            dir: tempfile::TempDir::new().expect("a temporary directory"),
            _made: None,
        }
    }

    /// A new, empty PostgreSQL database; see [`CreatedDatabase::new`].
    pub fn postgres() -> TestDatabase {
        let made = CreatedDatabase::new();
        TestDatabase {
            database: Database::Postgres(made.url.clone()),
            dir: tempfile::TempDir::new().expect("a temporary directory"),
            _made: Some(made),
        }
    }

    /// The directory for SQLite's files, or for a PostgreSQL store's cache of artifacts.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Opens a store on this database, with its time from `clock`.
    pub fn open(&self, clock: Arc<dyn Clock>) -> Result<Store, StoreError> {
        Store::open_in(&self.database, self.dir(), clock)
    }
}

/// A PostgreSQL database made for a test on the server [`TEST_POSTGRES_VARIABLE`] names,
/// dropped when this is. Its name carries the process id, so databases a killed test run left
/// behind are dropped by the next run.
pub struct CreatedDatabase {
    pub url: String,
    admin: String,
    name: String,
}

impl CreatedDatabase {
    /// Makes a new, empty database. Panics, naming the server, when it cannot: the tests that
    /// ask for one need it.
    pub fn new() -> CreatedDatabase {
        let admin = std::env::var(TEST_POSTGRES_VARIABLE)
            .unwrap_or_else(|_| DEFAULT_TEST_POSTGRES.to_string());
        CreatedDatabase::on(&admin)
    }

    /// Makes a new, empty database on the server `admin` names (a URL whose database the
    /// new one is created from).
    pub fn on(admin: &str) -> CreatedDatabase {
        CreatedDatabase::try_on(admin).unwrap_or_else(|e| {
            panic!("cannot create a test database on {admin} (set {TEST_POSTGRES_VARIABLE}): {e}")
        })
    }

    /// [`CreatedDatabase::on`], an error when the server cannot make one.
    pub fn try_on(admin: &str) -> Result<CreatedDatabase, StoreError> {
        static MADE: AtomicU64 = AtomicU64::new(0);
        static SWEPT: std::sync::Once = std::sync::Once::new();
        let admin = admin.to_string();
        SWEPT.call_once(|| {
            if let Err(e) = sweep(&admin) {
                eprintln!("could not drop the test databases earlier runs left on {admin}: {e}");
            }
        });
        let name = format!(
            "{PREFIX}{}_{}",
            std::process::id(),
            MADE.fetch_add(1, Ordering::Relaxed)
        );
        admin_statement(&admin, &format!("CREATE DATABASE {name}"))?;
        Ok(CreatedDatabase {
            url: with_database(&admin, &name),
            admin,
            name,
        })
    }
}

impl Default for CreatedDatabase {
    fn default() -> Self {
        CreatedDatabase::new()
    }
}

impl Drop for CreatedDatabase {
    fn drop(&mut self) {
        let (admin, name) = (&self.admin, &self.name);
        if let Err(e) = admin_statement(
            admin,
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        ) {
            eprintln!("the test database {name} was left on {admin}: {e}");
        }
    }
}

/// What the test databases' names begin with, before the process id.
const PREFIX: &str = "hotswap_test_";

/// Drops the test databases of processes that are gone.
fn sweep(admin: &str) -> Result<(), StoreError> {
    let pg = Postgres::connect(admin)?;
    let client = pg.client()?;
    let conn = Tx::postgres(&client);
    let names: Vec<String> = conn.query_map(
        "SELECT datname::text FROM pg_database WHERE starts_with(datname::text, ?1)",
        crate::db::params![PREFIX],
        |r| r.get(0),
    )?;
    for name in names {
        let pid = name[PREFIX.len()..].split('_').next().unwrap_or_default();
        let alive = Path::new("/proc").join(pid).exists();
        if !alive {
            conn.batch(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))?;
        }
    }
    Ok(())
}

/// `url` with its database replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_end..].find('/') {
        Some(i) => &base[..authority_end + i],
        None => base,
    };
    format!("{base}/{name}{query}")
}

fn admin_statement(admin: &str, sql: &str) -> Result<(), StoreError> {
    let pg = Postgres::connect(admin)?;
    let client = pg.client()?;
    Tx::postgres(&client).batch(sql)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_test_database_replaces_the_one_in_the_url() {
        use super::with_database;
        assert_eq!(
            with_database("postgres://u@h:5432/postgres", "t1"),
            "postgres://u@h:5432/t1"
        );
        assert_eq!(with_database("postgres://u@h", "t1"), "postgres://u@h/t1");
        assert_eq!(
            with_database("postgres://u@h/db?sslmode=disable", "t1"),
            "postgres://u@h/t1?sslmode=disable"
        );
    }
}
