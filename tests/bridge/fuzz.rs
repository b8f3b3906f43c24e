//! Property-based fuzzing of what reads untrusted bytes, through the real routes and the real
//! data file: request bodies, identity headers, and stored records. Whatever comes in, the
//! answer is one of the documented ones, never a 500 or a panic. Seeds are printed by
//! proptest on failure (`PROPTEST_CASES` raises the case count for the long run).

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

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
