//! Which database the tests' servers keep their state in: SQLite in their data directory, or,
//! with `HOTSWAP_TEST_DATABASE=postgres`, a PostgreSQL database made for each data directory
//! (the same one each time a server starts on that directory, so restarts keep their state).
//! `.ci/run` runs the suite once each way.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use hotswap_store::testing::CreatedDatabase;
use hotswap_store::{Database, Dialect};

/// The variable choosing the tests' database: `postgres`, or `sqlite` (the default).
pub const TEST_DATABASE_VARIABLE: &str = "HOTSWAP_TEST_DATABASE";

/// The database the tests' servers use.
pub fn dialect() -> Dialect {
    static DIALECT: OnceLock<Dialect> = OnceLock::new();
    *DIALECT.get_or_init(|| match std::env::var(TEST_DATABASE_VARIABLE).as_deref() {
        Ok("postgres") => Dialect::Postgres,
        Ok("sqlite") | Err(_) => Dialect::Sqlite,
        Ok(other) => {
            panic!("{TEST_DATABASE_VARIABLE} must be `sqlite` or `postgres`, found {other:?}")
        }
    })
}

/// The database of a server whose data directory is `dir`. PostgreSQL databases live as long
/// as the test process; the next run drops those a finished one left.
pub fn for_dir(dir: &Path) -> Database {
    match dialect() {
        Dialect::Sqlite => Database::Sqlite,
        Dialect::Postgres => {
            static MADE: OnceLock<Mutex<HashMap<PathBuf, CreatedDatabase>>> = OnceLock::new();
            let mut made = MADE
                .get_or_init(Default::default)
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let db = made.entry(dir.to_path_buf()).or_default();
            Database::Postgres(db.url.clone())
        }
    }
}

/// The `hotswap serve` flags for the database of `dir`: none for SQLite.
pub fn flags(dir: &Path) -> Vec<String> {
    match for_dir(dir) {
        Database::Sqlite => Vec::new(),
        Database::Postgres(url) => vec!["--database".into(), url],
    }
}
