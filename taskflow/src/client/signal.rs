//! Sending a signal that survives a server that is down or restarting: the request carries an
//! `Idempotency-Key` chosen once per call and is retried with backoff until the server
//! answers, so a retry of a request that did arrive is not delivered twice.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;

use super::{Client, ClientError};
use crate::ids::IdempotencyKey;

/// Attempts of one [`Client::signal`] call (the first and 7 retries: with the default 2 s
/// base, about 4 minutes of waiting in all).
const ATTEMPTS: u32 = 8;

/// A key no other call of this process (nor, by its clock and pid, another process) uses.
fn fresh_key() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "sig-{nanos:x}-{:x}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

impl Client {
    /// Sends signal `name` with `payload` to the run of `ik` and returns the run's status
    /// JSON once the server says it is durable (202). While the server cannot be reached or
    /// answers 5xx / 429, the same request (same `Idempotency-Key`) is sent again after the
    /// backoff delay (base × 2ⁿ, capped at 32×, up to 8 attempts), so the signal is queued in
    /// the client across a restart and delivered once.
    ///
    /// # Errors
    /// [`ClientError::Http`] when the server refuses it (404, 409, 400, 413);
    /// [`ClientError::GaveUp`] after the last attempt failed.
    pub async fn signal(
        &self,
        ik: &IdempotencyKey,
        name: &str,
        payload: &Value,
    ) -> Result<Value, ClientError> {
        let key = fresh_key();
        let body = serde_json::to_vec(payload).map_err(|e| ClientError::Decode {
            name: "payload".into(),
            message: e.to_string(),
        })?;
        let url = format!("{}/tasks/{ik}/signals/{name}", self.base);
        let mut last = String::new();
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                let delay = self.backoff_base.saturating_mul(1 << (attempt - 1).min(5));
                tokio::time::sleep(delay.min(Duration::from_secs(3600))).await;
            }
            let sent = self
                .http
                .post(&url)
                .headers(self.headers.clone())
                .header("content-type", "application/json")
                .header("idempotency-key", &key)
                .body(body.clone())
                .send()
                .await;
            let response = match sent {
                Ok(response) => response,
                Err(e) => {
                    last = e.to_string();
                    continue;
                }
            };
            let status = response.status();
            let json: Value = response.json().await.unwrap_or(Value::Null);
            if status.is_success() {
                return Ok(json);
            }
            let e = &json["error"];
            let error = ClientError::Http {
                status: status.as_u16(),
                code: e["code"].as_str().unwrap_or_default().to_owned(),
                message: e["message"].as_str().unwrap_or_default().to_owned(),
                path: e["path"].as_str().map(str::to_owned),
            };
            if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                last = error.to_string();
                continue;
            }
            return Err(error);
        }
        Err(ClientError::GaveUp {
            attempts: ATTEMPTS,
            last,
        })
    }
}
