//! The content-addressed idempotency key.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::identity::UserId;
use crate::ids::IdempotencyKey;

/// `base64url_nopad(sha256(JCS({"task", "input", "owner"})))`.
///
/// `input` is the typed input re-serialised, so field order in the request and omitted fields
/// that have defaults do not change the key.
pub(crate) fn idempotency_key(
    task: &str,
    input: &serde_json::Value,
    owner: Option<&UserId>,
) -> IdempotencyKey {
    let doc = serde_json::json!({
        "task": task,
        "input": input,
        "owner": owner.map(UserId::as_str),
    });
    // A `serde_json::Value` holds no non-finite float, the only thing JCS refuses.
    let canonical = serde_jcs::to_vec(&doc).expect("JCS of a serde_json::Value cannot fail");
    let digest = Sha256::digest(&canonical);
    IdempotencyKey::from_trusted(URL_SAFE_NO_PAD.encode(digest))
}

/// The key of child `n` of run `parent` (of key `parent_ik`): the same on every replay of
/// the parent, and another for a new run under the parent's key (a run retried after it
/// failed starts fresh children).
pub(crate) fn child_key(
    parent_ik: &IdempotencyKey,
    parent: crate::ids::TaskId,
    n: u32,
) -> IdempotencyKey {
    let doc = serde_json::json!({
        "parent": parent_ik.as_str(),
        "run": parent.to_string(),
        "child": n,
    });
    let canonical = serde_jcs::to_vec(&doc).expect("JCS of a serde_json::Value cannot fail");
    IdempotencyKey::from_trusted(URL_SAFE_NO_PAD.encode(Sha256::digest(&canonical)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stable_shape_and_order_independent() {
        let a = idempotency_key("t", &json!({"a": 1, "b": [1, 2]}), None);
        let b: serde_json::Value = serde_json::from_str(r#"{"b":[1,2],"a":1}"#).expect("json");
        assert_eq!(a, idempotency_key("t", &b, None));
        assert_eq!(a.as_str().len(), IdempotencyKey::LEN);
        assert!(IdempotencyKey::parse(a.as_str()).is_some());
        let ann = UserId::new("ann").expect("valid");
        assert_ne!(a, idempotency_key("t", &b, Some(&ann)));
        assert_ne!(a, idempotency_key("u", &b, None));
    }
}
