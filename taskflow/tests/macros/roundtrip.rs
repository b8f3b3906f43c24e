//! Event → (name, JSON) → event, for every variant shape, and the wire names.

use serde::{Deserialize, Serialize};
use taskflow::prelude::*;
use taskflow::{EventDecodeError, Events};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StageInfo {
    pub stage: String,
    pub rows: u64,
}

#[events]
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    Tick {
        value: u32,
        total: u32,
    },
    #[event(name = "stage-done")]
    StageDone(StageInfo),
    Started,
    RowsLoaded {
        #[serde(rename = "n")]
        count: u64,
        big: i64,
        note: Option<String>,
    },
    HttpRequestSent(u16),
}

fn round_trip(e: Progress) -> (String, serde_json::Value) {
    let name = e.name().to_owned();
    let json = e.to_payload().unwrap();
    let back = Progress::decode(&name, json.clone()).unwrap();
    assert_eq!(back, e);
    (name, json)
}

#[test]
fn struct_variant() {
    let (name, json) = round_trip(Progress::Tick {
        value: 3,
        total: 10,
    });
    assert_eq!(name, "tick");
    assert_eq!(json, serde_json::json!({"value": 3, "total": 10}));
}

#[test]
fn struct_variant_with_serde_field_attributes() {
    let (name, json) = round_trip(Progress::RowsLoaded {
        count: 7,
        big: i64::MIN,
        note: None,
    });
    assert_eq!(name, "rows_loaded");
    assert_eq!(
        json,
        serde_json::json!({"n": 7, "big": i64::MIN, "note": null})
    );
}

#[test]
fn newtype_variant_with_renamed_wire_name() {
    let (name, json) = round_trip(Progress::StageDone(StageInfo {
        stage: "load".into(),
        rows: 42,
    }));
    assert_eq!(name, "stage-done");
    assert_eq!(json, serde_json::json!({"stage": "load", "rows": 42}));
}

#[test]
fn newtype_of_a_primitive_and_snake_case_of_acronyms() {
    let (name, json) = round_trip(Progress::HttpRequestSent(404));
    assert_eq!(name, "http_request_sent");
    assert_eq!(json, serde_json::json!(404));
}

#[test]
fn unit_variant_is_an_empty_object() {
    let (name, json) = round_trip(Progress::Started);
    assert_eq!(name, "started");
    assert_eq!(json, serde_json::json!({}));
}

#[test]
fn names_in_declaration_order() {
    assert_eq!(
        Progress::NAMES,
        [
            "tick",
            "stage-done",
            "started",
            "rows_loaded",
            "http_request_sent"
        ]
    );
}

#[test]
fn bad_input_is_a_typed_error() {
    assert!(matches!(
        Progress::decode("nope", serde_json::json!({})),
        Err(EventDecodeError::UnknownName(n)) if n == "nope"
    ));
    assert!(matches!(
        Progress::decode("tick", serde_json::json!({"value": "x"})),
        Err(EventDecodeError::Payload { name, .. }) if name == "tick"
    ));
}
