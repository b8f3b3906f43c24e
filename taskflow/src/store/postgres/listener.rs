//! Hearing other processes: a connection that `LISTEN`s on the schema's channel, reads the
//! events another process committed from the log for keys someone here follows, and reports
//! runs another process changed. When the connection drops, followers poll the log until it
//! is back (then read it back once), and it reconnects with backoff.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls, Notification};

use super::Shared;
use super::encode;
use super::migrate::reason;
use crate::ids::{IdempotencyKey, TaskId};

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// One notification of `apply_group` (or of a claim).
#[derive(Debug, Deserialize)]
struct Note {
    /// The committing process.
    o: String,
    /// A key that got events `f..=l`.
    k: Option<IdempotencyKey>,
    f: Option<u64>,
    l: Option<u64>,
    /// A run whose epoch moved on.
    r: Option<u64>,
}

/// Where the listener connects and what it reads.
pub(super) struct Listener {
    pub(super) pg: tokio_postgres::Config,
    pub(super) channel: String,
    pub(super) schema: String,
    pub(super) shared: Arc<Shared>,
}

impl Listener {
    /// Listens until the store closes, reconnecting whenever the connection drops.
    pub(super) async fn run(self) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let heard = self.listen_once().await;
            self.shared.hooks().listening(false);
            if self.shared.state.is_crashed() {
                return;
            }
            match heard {
                // It was up for a while: start the backoff over.
                Ok(()) => backoff = FIRST_BACKOFF,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "taskflow's PostgreSQL listener is down; followers poll the log meanwhile");
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One connection's life: `Ok` when it ended after having listened, `Err` when it could
    /// not get that far.
    async fn listen_once(&self) -> Result<(), String> {
        let (client, mut connection) = self.pg.connect(NoTls).await.map_err(|e| reason(&e))?;
        let (tx, mut notes) = mpsc::unbounded_channel::<Notification>();
        let driver = tokio::spawn(async move {
            loop {
                match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(n))) => {
                        if tx.send(n).is_err() {
                            return;
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::debug!(error = %reason(&e), "the listener connection failed");
                        return;
                    }
                    None => return,
                }
            }
        });
        let listening = async {
            client
                .batch_execute(&format!("LISTEN {}", self.channel))
                .await
                .map_err(|e| reason(&e))?;
            let events = client
                .prepare(&format!(
                    "SELECT seq, name, data::text FROM {}.events \
                     WHERE ik = $1 AND seq >= $2 AND seq <= $3 ORDER BY seq",
                    self.schema
                ))
                .await
                .map_err(|e| reason(&e))?;
            // From here on nothing is missed: followers read back what they may have.
            self.shared.hooks().listening(true);
            while let Some(note) = notes.recv().await {
                self.heard(&client, &events, &note).await?;
            }
            Ok::<_, String>(())
        };
        let result = listening.await;
        driver.abort();
        result
    }

    async fn heard(
        &self,
        client: &tokio_postgres::Client,
        events: &tokio_postgres::Statement,
        note: &Notification,
    ) -> Result<(), String> {
        let Ok(note) = serde_json::from_str::<Note>(note.payload()) else {
            tracing::warn!(
                payload = note.payload(),
                "an unreadable taskflow notification"
            );
            return Ok(());
        };
        if note.o == self.shared.owner {
            return Ok(());
        }
        let hooks = self.shared.hooks();
        if let Some(id) = note.r {
            hooks.run_changed_elsewhere(TaskId(id));
        }
        if let (Some(ik), Some(first), Some(last)) = (note.k, note.f, note.l)
            && hooks.wants_events(&ik)
        {
            let bound = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
            let rows = client
                .query(events, &[&ik.as_str(), &bound(first), &bound(last)])
                .await
                .map_err(|e| reason(&e))?;
            let got = rows
                .iter()
                .map(encode::event)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?;
            hooks.committed(&ik, &got);
        }
        Ok(())
    }
}
