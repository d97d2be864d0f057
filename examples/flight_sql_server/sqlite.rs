//! The SQLite side: the database, what a statement may touch, and SQLite's
//! errors as gRPC statuses.

use std::path::Path;
use std::time::Duration;

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::{Connection, OpenFlags};
use tonic::Status;

/// The schema and rows of a new database, so that the recipe runs with no
/// setup.
pub(crate) const FIRST_RUN: &str = "
    CREATE TABLE animals (
        name TEXT PRIMARY KEY,
        legs INTEGER NOT NULL,
        size REAL NOT NULL
    );
    INSERT INTO animals VALUES
        ('ant', 6, 0.5), ('spider', 8, 2), ('cat', 4, 46),
        ('dog', 4, 90), ('ostrich', 2, 200), ('horse', 4, 240);
    CREATE TABLE sightings (
        id INTEGER PRIMARY KEY,
        animal TEXT NOT NULL REFERENCES animals (name),
        place TEXT NOT NULL,
        photo BLOB
    );
    INSERT INTO sightings (animal, place, photo) VALUES
        ('cat', 'garden', x'cafe'), ('dog', 'park', NULL),
        ('ant', 'kitchen', NULL);
";

/// How long a statement waits for another connection's write lock.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens the database file, creating it with [`FIRST_RUN`] when it is new.
pub fn create_database(path: &Path) -> rusqlite::Result<()> {
    let connection = Connection::open(path)?;
    connection.pragma_update(None, "journal_mode", "wal")?;
    let tables: i64 = connection.query_row(
        "SELECT count(*) FROM sqlite_schema WHERE type = 'table'",
        [],
        |row| row.get(0),
    )?;
    if tables == 0 {
        connection.execute_batch(FIRST_RUN)?;
    }
    Ok(())
}

/// Opens a connection for one call (or one transaction): statements that
/// would reach other files or change how SQLite runs are refused.
pub(crate) fn open(path: &Path) -> Result<Connection, Status> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut connection = Connection::open_with_flags(path, flags)
        .map_err(|_| Status::unavailable("the database cannot be opened"))?;
    connection.busy_timeout(BUSY_TIMEOUT).map_err(sql_error)?;
    connection
        .pragma_update(None, "foreign_keys", true)
        .map_err(sql_error)?;
    connection.authorizer(Some(authorize)).map_err(sql_error)?;
    Ok(connection)
}

// ANCHOR: authorizer
/// The pragmas a client may run: they read the schema and change nothing.
pub(crate) const PRAGMAS: [&str; 6] = [
    "table_info",
    "table_xinfo",
    "index_list",
    "index_info",
    "foreign_key_list",
    "foreign_key_check",
];

pub(crate) fn authorize(context: AuthContext<'_>) -> Authorization {
    match context.action {
        AuthAction::Attach { .. } | AuthAction::Detach { .. } => {
            Authorization::Deny
        }
        AuthAction::Pragma { pragma_name, .. } => {
            let allowed =
                PRAGMAS.iter().any(|p| p.eq_ignore_ascii_case(pragma_name));
            if allowed {
                Authorization::Allow
            } else {
                Authorization::Deny
            }
        }
        AuthAction::Function { function_name } => {
            if function_name.eq_ignore_ascii_case("load_extension") {
                Authorization::Deny
            } else {
                Authorization::Allow
            }
        }
        _ => Authorization::Allow,
    }
}
// ANCHOR_END: authorizer

/// SQLite's error as a gRPC status: SQLite's own words, no file names.
pub(crate) fn sql_error(error: rusqlite::Error) -> Status {
    use rusqlite::ErrorCode;
    match error {
        rusqlite::Error::SqliteFailure(failure, message) => {
            let message = message.unwrap_or_else(|| failure.to_string());
            match failure.code {
                ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => {
                    Status::unavailable(format!("the database is busy: {message}"))
                }
                ErrorCode::OperationInterrupted => {
                    Status::cancelled("the statement was cancelled")
                }
                ErrorCode::AuthorizationForStatementDenied => {
                    Status::permission_denied(format!(
                        "{message}: this server refuses ATTACH, DETACH, \
                         load_extension and most pragmas"
                    ))
                }
                ErrorCode::ConstraintViolation => {
                    Status::failed_precondition(message)
                }
                ErrorCode::CannotOpen
                | ErrorCode::SystemIoFailure
                | ErrorCode::DiskFull
                | ErrorCode::DatabaseCorrupt
                | ErrorCode::ReadOnly => {
                    Status::internal("the database failed; see the server's log")
                }
                _ => Status::invalid_argument(message),
            }
        }
        rusqlite::Error::SqlInputError { msg, offset, .. } => {
            Status::invalid_argument(format!("{msg} (at byte {offset})"))
        }
        rusqlite::Error::MultipleStatement => Status::invalid_argument(
            "the text holds more than one statement: send one at a time",
        ),
        rusqlite::Error::InvalidParameterCount(given, wanted) => {
            Status::invalid_argument(format!(
                "the statement has {wanted} parameter(s), {given} were bound"
            ))
        }
        other => Status::invalid_argument(other.to_string()),
    }
}
