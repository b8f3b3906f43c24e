//! Property-based fuzzing of what reads untrusted bytes, through the real routes and the real
//! data file: request bodies, identity headers, `Last-Event-ID`, the SSE client's parser, and
//! stored records (the last three through `oracles.rs`, which the `cargo fuzz` targets share). Whatever comes in, the
//! answer is one of the documented ones, never a 500 or a panic. Seeds are printed by
//! proptest on failure (`PROPTEST_CASES` raises the case count for the long run).

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::oracles;
use crate::support::*;

/// A runner of `cases` cases, or of `PROPTEST_CASES` (at most `cap`) when that is set.
fn runner(cases: u32, cap: u32) -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse::<u32>().ok())
        .map_or(cases, |c| c.min(cap));
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

/// Bodies: arbitrary bytes, and JSON-shaped text near the task's input.
fn bodies() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512),
        any::<String>().prop_map(String::into_bytes),
        (any::<i64>(), any::<String>(), any::<bool>()).prop_map(|(n, tag, hold)| {
            format!(r#"{{"tag": {tag:?}, "n": {n}, "hold": {hold}}}"#).into_bytes()
        }),
        "\\{[ -~]{0,80}\\}".prop_map(String::into_bytes),
    ]
}

#[test]
fn request_bodies_of_any_shape_get_a_documented_answer() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let s = runtime.block_on(server());
    let client = client();
    let cases = std::sync::atomic::AtomicU32::new(0);
    runner(256, u32::MAX)
        .run(&(bodies(), any::<bool>()), |(body, json_type)| {
            let status = runtime.block_on(async {
                let mut request = client
                    .post(format!("{}/api/tasks/count", s.base))
                    .body(body);
                if json_type {
                    request = request.header("content-type", "application/json");
                }
                request.send().await.unwrap().status().as_u16()
            });
            cases.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            prop_assert!(
                [200, 400, 413, 415, 429].contains(&status),
                "answered {}",
                status
            );
            Ok(())
        })
        .unwrap();
    let cases = cases.into_inner();
    println!("{cases} request bodies: every answer 200, 400, 413, 415 or 429");
    runtime.block_on(s.shutdown());
}

#[test]
fn identity_headers_of_any_content_never_break_the_routes() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let s = runtime.block_on(server());
    let client = client();
    let header = || {
        prop_oneof![
            "[ -~]{0,300}",
            proptest::collection::vec(any::<u8>(), 0..64)
                .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        ]
    };
    runner(256, u32::MAX)
        .run(&(header(), header(), header()), |(user, email, token)| {
            let status = runtime.block_on(async {
                let mut request = client.get(format!("{}/api/tasks", s.base));
                for (name, value) in [
                    ("x-forwarded-user", &user),
                    ("x-forwarded-email", &email),
                    ("x-forwarded-access-token", &token),
                ] {
                    if let Ok(v) = reqwest::header::HeaderValue::from_str(value) {
                        request = request.header(name, v);
                    }
                }
                request.send().await.unwrap().status().as_u16()
            });
            prop_assert!([200, 400, 401].contains(&status), "answered {}", status);
            Ok(())
        })
        .unwrap();
    runtime.block_on(s.shutdown());
}

#[test]
fn a_corrupted_stored_record_is_an_error_naming_the_run_never_a_panic() {
    use redb::ReadableDatabase;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cases = std::sync::atomic::AtomicU32::new(0);
    // Each case writes a data file and opens a flow twice (~50 ms): at most 2,000.
    runner(48, 2000)
        .run(&proptest::collection::vec(any::<u8>(), 0..256), |garbage| {
            let dir = taskflow::testing::TempDataDir::new();
            let ik = runtime.block_on(async {
                let flow = dir.builder().register(count).build().await.unwrap();
                let input = CountIn {
                    tag: "fuzz-record".into(),
                    n: 1,
                    ..CountIn::default()
                };
                let run = flow.start(count, input).await.unwrap();
                flow.wait(&run).await.unwrap();
                flow.shutdown().await.unwrap();
                run.idempotency_key
            });
            {
                let db = redb::Database::open(dir.path().join("taskflow.redb")).unwrap();
                let txn = db.begin_write().unwrap();
                txn.open_table(redb::TableDefinition::<u64, &[u8]>::new("tasks"))
                    .unwrap()
                    .insert(1, garbage.as_slice())
                    .unwrap();
                txn.commit().unwrap();
                drop(db.begin_read());
            }
            let outcome = runtime.block_on(async {
                let flow = dir.builder().register(count).build().await.unwrap();
                let status = flow.status(&ik).await;
                flow.shutdown().await.unwrap();
                status
            });
            cases.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            match outcome {
                Ok(_) => {} // the bytes happened to decode as a record
                Err(e) => prop_assert!(e.to_string().contains("run t1"), "{}", e),
            }
            Ok(())
        })
        .unwrap();
    let cases = cases.into_inner();
    println!("{cases} corrupted records: each read answered an error naming run t1");
}

#[test]
fn last_event_id_accepts_exactly_safe_decimal_integers() {
    let input = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..40),
        "[0-9]{0,20}".prop_map(String::into_bytes),
        any::<u64>().prop_map(|n| n.to_string().into_bytes()),
    ];
    let mut runner = runner(4096, u32::MAX);
    let cases = runner.config().cases;
    runner
        .run(&input, |bytes| {
            oracles::last_event_id(&bytes).map_err(TestCaseError::fail)
        })
        .unwrap();
    println!("{cases} Last-Event-ID values: each parsed exactly as the grammar says");
}

#[test]
fn every_stored_record_that_does_not_decode_is_an_error_naming_it() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let base = runtime.block_on(oracles::image_with_one_run());
    let record = prop_oneof![
        Just(oracles::Record::Run),
        Just(oracles::Record::Step),
        Just(oracles::Record::Event),
    ];
    let garbage = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..256),
        "\\{[ -~]{0,80}\\}".prop_map(String::into_bytes),
    ];
    let mut runner = runner(512, u32::MAX);
    let cases = runner.config().cases;
    runner
        .run(&(record, garbage), |(record, garbage)| {
            oracles::stored_record(&base, record, &garbage).map_err(TestCaseError::fail)
        })
        .unwrap();
    println!("{cases} corrupted run, step and event records: each an error naming it, or decoded");
}

#[test]
fn the_sse_client_reads_any_bytes_into_events_or_typed_errors() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let frames = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512),
        proptest::collection::vec(
            prop_oneof![
                "id: [0-9a-z]{0,20}\n".prop_map(String::from),
                "event: [a-z_:.]{0,12}\n".prop_map(String::from),
                "data: [ -~]{0,60}\n".prop_map(String::from),
                Just("data: {\"i\": 1}\n".to_owned()),
                Just(": hb\n".to_owned()),
                Just("\n".to_owned()),
                Just("retry: 5\n".to_owned()),
            ],
            0..24,
        )
        .prop_map(|lines| lines.concat().into_bytes()),
    ];
    // Each case is a real socket and up to three reconnects (1, 2, 4 ms).
    let mut runner = runner(128, 20_000);
    let cases = runner.config().cases;
    runner
        .run(&frames, |bytes| {
            runtime
                .block_on(oracles::client_reads(bytes))
                .map_err(TestCaseError::fail)
        })
        .unwrap();
    println!("{cases} SSE bodies: the client yielded events or typed errors and ended each");
}
