//! Creating and migrating taskflow's tables, one process at a time.

use tokio_postgres::Client;

use super::config::PgConfig;
use crate::error::BuildError;

/// Bump with every new entry of [`MIGRATIONS`]; a database with a newer version is refused.
pub(super) const SCHEMA_VERSION: u64 = 4;

/// The SQL of each version, applied in order from the database's version + 1: 1 the tables,
/// 2 the runs' task versions, 3 the runs' durable waits.
const MIGRATIONS: [&str; 4] = [
    include_str!("schema.sql"),
    include_str!("versions.sql"),
    include_str!("waits.sql"),
    include_str!("children.sql"),
];

/// `apply_group`, replaced after any migration so it matches the newest tables.
const FUNCTIONS: &str = include_str!("apply_group.sql");

/// First key of the advisory lock that serialises migrations ("task" in ASCII); the second
/// is the schema name's hash, so two schemas migrate independently.
const LOCK_CLASS: i32 = 0x7461_736b;

/// Creates the schema and its tables, or brings them to [`SCHEMA_VERSION`], inside one
/// transaction holding an advisory lock: processes starting at once migrate one at a time,
/// and a failure leaves the database as it was.
pub(super) async fn migrate(
    client: &mut Client,
    config: &PgConfig,
    schema: &str,
) -> Result<(), BuildError> {
    let failed =
        |what: &str, e: tokio_postgres::Error| config.error(format!("{what}: {}", reason(&e)));
    let txn = client
        .transaction()
        .await
        .map_err(|e| failed("cannot begin the migration", e))?;
    txn.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        &[&LOCK_CLASS, &config.schema_name()],
    )
    .await
    .map_err(|e| failed("cannot take the migration lock", e))?;
    txn.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE IF NOT EXISTS {schema}.meta (key text PRIMARY KEY, value bigint NOT NULL);"
    ))
    .await
    .map_err(|e| failed(&format!("cannot create schema {schema}"), e))?;
    let found: Option<i64> = txn
        .query_opt(
            &format!("SELECT value FROM {schema}.meta WHERE key = 'schema_version'"),
            &[],
        )
        .await
        .map_err(|e| failed("cannot read the schema version", e))?
        .map(|row| row.get(0));
    let found = found.map_or(0, |v| u64::try_from(v).unwrap_or(0));
    if found > SCHEMA_VERSION {
        return Err(BuildError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    let channel = format!("'{}'", config.channel());
    let sql = |text: &str| text.replace("{s}", schema).replace("{c}", &channel);
    for (index, text) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(found).unwrap_or(0))
    {
        txn.batch_execute(&sql(text))
            .await
            .map_err(|e| failed(&format!("cannot apply schema version {}", index + 1), e))?;
    }
    if found < SCHEMA_VERSION {
        txn.batch_execute(&sql(FUNCTIONS))
            .await
            .map_err(|e| failed("cannot create the commit function", e))?;
    }
    let version = i64::try_from(SCHEMA_VERSION).unwrap_or(i64::MAX);
    txn.execute(
        &format!(
            "INSERT INTO {schema}.meta (key, value) VALUES ('schema_version', $1)
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
        ),
        &[&version],
    )
    .await
    .map_err(|e| failed("cannot record the schema version", e))?;
    txn.commit()
        .await
        .map_err(|e| failed("cannot commit the migration", e))
}

/// The server's own words for a failure (`permission denied for database test`), or the
/// client's when the server said nothing.
pub(crate) fn reason(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            text
        }
    }
}
