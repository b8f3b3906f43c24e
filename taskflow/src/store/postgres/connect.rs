//! Opening a [`PgStore`]: its connections (named for `pg_stat_activity`), the migration, the
//! prepared statements, and the committer and listener tasks.

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls};

use super::committer::Committer;
use super::encode::RUN_COLUMNS;
use super::{PgConfig, PgStore, Reads, Shared, listener, migrate, reason};
use crate::error::BuildError;
use crate::store::state::StoreState;

impl PgStore {
    /// Connects, creates or migrates taskflow's tables in the configured schema (one process
    /// at a time, under an advisory lock) and starts the committer. Call it inside a Tokio
    /// runtime: the connections are driven by tasks spawned on it.
    ///
    /// # Errors
    /// [`BuildError::Postgres`] naming host, port, database and user (never the password)
    /// when the URL does not parse, the server does not answer, the login or a privilege is
    /// refused; [`BuildError::SchemaTooNew`] when a newer taskflow migrated the schema;
    /// [`BuildError::InvalidSetting`] for a schema name outside the grammar.
    pub async fn connect(config: impl Into<PgConfig>) -> Result<Self, BuildError> {
        let config = config.into();
        let schema = config.quoted_schema()?;
        let pg = config.parse()?;
        let owner = owner_id();
        // Each connection names itself, so an operator (or a test) can tell them apart in
        // pg_stat_activity.
        let named = |role: &str| {
            let mut pg = pg.clone();
            pg.application_name(format!("taskflow {role} {owner}"));
            pg
        };
        let mut tasks = Vec::new();
        let mut writer = connect_one(&config, &named("committer"), &mut tasks).await?;
        migrate::migrate(&mut writer, &config, &schema).await?;
        let reader = connect_one(&config, &named("reader"), &mut tasks).await?;
        let prepare = |sql: String| {
            let reader = &reader;
            let config = &config;
            async move {
                reader
                    .prepare(&sql)
                    .await
                    .map_err(|e| config.error(format!("cannot prepare a query: {}", reason(&e))))
            }
        };
        let reads = Reads {
            task: prepare(format!("SELECT {RUN_COLUMNS} FROM {schema}.runs WHERE id = $1")).await?,
            current_run: prepare(format!(
                "SELECT k.last_seq, r.{} FROM {schema}.keys k LEFT JOIN {schema}.runs r \
                 ON r.id = k.current_run WHERE k.ik = $1",
                RUN_COLUMNS.replace(", ", ", r.")
            ))
            .await?,
            events: prepare(format!(
                "SELECT seq, name, data::text FROM {schema}.events \
                 WHERE ik = $1 AND seq > $2 ORDER BY seq LIMIT $3"
            ))
            .await?,
            steps: prepare(format!(
                "SELECT key, record::text FROM {schema}.steps WHERE task = $1 ORDER BY key COLLATE \"C\""
            ))
            .await?,
            steps_with_prefix: prepare(format!(
                "SELECT key, record::text FROM {schema}.steps WHERE task = $1 \
                 AND starts_with(key, $2) ORDER BY key COLLATE \"C\""
            ))
            .await?,
            // Runs in flight whose lease expired (or that nobody claimed): taken over with an
            // epoch bump, which fences off a former owner that is only slow, not dead.
            claim: prepare(format!(
                "UPDATE {schema}.runs SET lease_owner = $1, \
                 lease_expires_at = now() + $2::bigint * interval '1 millisecond', epoch = epoch + 1 \
                 WHERE id IN (SELECT id FROM {schema}.runs \
                   WHERE status IN ('created', 'running') \
                   AND (lease_expires_at IS NULL OR lease_expires_at < now()) \
                   AND name || '@' || version = ANY($4::text[]) \
                   ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED) \
                 RETURNING {RUN_COLUMNS}"
            ))
            .await?,
            // Created runs waiting in another live process's queue past `$4` ms.
            claim_queued: prepare(format!(
                "UPDATE {schema}.runs SET lease_owner = $1, \
                 lease_expires_at = now() + $2::bigint * interval '1 millisecond', epoch = epoch + 1 \
                 WHERE id IN (SELECT id FROM {schema}.runs \
                   WHERE status = 'created' AND NOT on_behalf_of \
                   AND lease_owner <> $1 AND lease_expires_at >= now() \
                   AND queued_since < now() - $4::bigint * interval '1 millisecond' \
                   AND name || '@' || version = ANY($5::text[]) \
                   ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED) \
                 RETURNING {RUN_COLUMNS}"
            ))
            .await?,
            // Tells a former owner that is still alive (it was frozen, or cut off) at once.
            notify_runs: prepare(format!(
                "SELECT pg_notify('{}', json_build_object('o', $1::text, 'r', r)::text) \
                 FROM unnest($2::bigint[]) AS r",
                config.channel()
            ))
            .await?,
            release: prepare(format!(
                "UPDATE {schema}.runs SET lease_expires_at = now() \
                 WHERE lease_owner = $1 AND status IN ('created', 'running')"
            ))
            .await?,
            release_runs: prepare(format!(
                "UPDATE {schema}.runs SET lease_expires_at = now() WHERE id = ANY($1::bigint[])"
            ))
            .await?,
            streams_set: prepare(format!(
                "INSERT INTO {schema}.streams (task, process, open, seen_at) \
                 VALUES ($1, $2, $3, now()) ON CONFLICT (task, process) \
                 DO UPDATE SET open = EXCLUDED.open, seen_at = now()"
            ))
            .await?,
            streams_drop: prepare(format!(
                "DELETE FROM {schema}.streams WHERE task = $1 AND process = $2"
            ))
            .await?,
            streams_elsewhere: prepare(format!(
                "SELECT coalesce(sum(open), 0)::bigint FROM {schema}.streams \
                 WHERE task = $1 AND process <> $2 \
                 AND seen_at > now() - $3::bigint * interval '1 millisecond'"
            ))
            .await?,
            streams_seen: prepare(format!(
                "UPDATE {schema}.streams SET seen_at = now() WHERE process = $1"
            ))
            .await?,
            renew: prepare(format!(
                "UPDATE {schema}.runs SET lease_expires_at = now() + $2::bigint * interval '1 millisecond' \
                 WHERE lease_owner = $1 AND status IN ('created', 'running')"
            ))
            .await?,
        };
        let apply = writer
            .prepare(&format!(
                "SELECT {schema}.apply_group($1::text::json, $2::text[], $3::text, $4::bigint)::text"
            ))
            .await
            .map_err(|e| config.error(format!("cannot prepare the commit: {}", reason(&e))))?;
        let lone_step = writer
            .prepare(&format!(
                "INSERT INTO {schema}.steps (task, key, record) \
                 SELECT id, $2::text, $3::text::json FROM {schema}.runs \
                 WHERE id = $1 AND epoch = $4 FOR UPDATE \
                 ON CONFLICT (task, key) DO UPDATE SET record = EXCLUDED.record"
            ))
            .await
            .map_err(|e| config.error(format!("cannot prepare the commit: {}", reason(&e))))?;
        let event_run = writer
            .prepare(&include_str!("event_run.sql").replace("{s}", &schema))
            .await
            .map_err(|e| config.error(format!("cannot prepare the commit: {}", reason(&e))))?;
        let shared = Arc::new(Shared {
            owner: owner.clone(),
            lease_ms: i64::try_from(config.stale_threshold.as_millis()).unwrap_or(i64::MAX),
            state: StoreState::default(),
        });
        let (sender, receiver) = mpsc::unbounded_channel();
        let committer = Committer {
            shared: shared.clone(),
            client: writer,
            apply,
            lone_step,
            event_run,
            channel: config.channel(),
            receiver,
        };
        tasks.push(tokio::spawn(committer.run()));
        let listener = listener::Listener {
            pg: named("listener"),
            channel: config.channel(),
            schema: schema.clone(),
            shared: shared.clone(),
        };
        tasks.push(tokio::spawn(listener.run()));
        tracing::info!(config = ?config, "PostgreSQL store open");
        Ok(Self {
            config,
            schema,
            reader,
            reads,
            shared,
            sender: Mutex::new(Some(sender)),
            tasks: Mutex::new(tasks),
        })
    }
}

async fn connect_one(
    config: &PgConfig,
    pg: &tokio_postgres::Config,
    tasks: &mut Vec<JoinHandle<()>>,
) -> Result<Client, BuildError> {
    let (client, connection) = pg.connect(NoTls).await.map_err(|e| {
        config.error(format!(
            "cannot connect: {}; check that the server runs and the URL (TASKFLOW_DATABASE_URL) is right",
            reason(&e)
        ))
    })?;
    tasks.push(tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::error!(error = %reason(&e), "a PostgreSQL connection of taskflow's store ended");
        }
    }));
    Ok(client)
}

/// A lease owner id unique to this opened store: the process id and the time it opened.
fn owner_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("p{}-{nanos:x}", std::process::id())
}
