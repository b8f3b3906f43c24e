//! The operator console's routes over a real socket: closed (403 `forbidden`) to everyone the
//! access rule does not name, on every route; the run listing across owners with filters and a
//! cursor that inserts do not shift; one run in full, its events, and actions on another
//! owner's run.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};
use taskflow::axum::{ConsoleAccess, ProxyTrust, console, console_with};
use taskflow::testing::TempDataDir;
use taskflow::{TaskFlow, UserContext, UserId};

use crate::support::{CountIn, await_signal, client, count, first_frames, gate, serve_app};

/// A flow with the test tasks and an app with the task API, the console for `admin` at
/// `/console`, a console with no rule at `/closed` and one for the `operators` group at
/// `/groups`.
async fn app() -> (String, TaskFlow, TempDataDir) {
    let dir = TempDataDir::new();
    let flow = dir
        .builder()
        .register(count)
        .register(await_signal)
        .stop_grace(Duration::from_millis(200))
        .build()
        .await
        .unwrap();
    let trust = || ProxyTrust::new().layer(&flow);
    let app = axum::Router::new()
        .nest(
            "/api",
            taskflow::axum::routes_with(flow.clone(), taskflow::axum::Anonymous::AsService)
                .layer(trust()),
        )
        .nest(
            "/console",
            console_with(flow.clone(), ConsoleAccess::users(["admin"])).layer(trust()),
        )
        .nest("/closed", console(flow.clone()).layer(trust()))
        .nest(
            "/groups",
            console_with(
                flow.clone(),
                ConsoleAccess::role_header("x-forwarded-groups", "operators"),
            )
            .layer(trust()),
        );
    (serve_app(app).await, flow, dir)
}

fn user(id: &str) -> UserContext {
    UserContext::new(UserId::new(id).unwrap())
}

/// `GET` as `who` (no identity header when `None`): status and body.
async fn get(base: &str, path: &str, who: Option<&str>) -> (u16, String) {
    let mut req = client().get(format!("{base}{path}"));
    if let Some(who) = who {
        req = req.header("x-forwarded-user", who);
    }
    let res = req.send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

async fn get_json(base: &str, path: &str) -> Value {
    let (status, body) = get(base, path, Some("admin")).await;
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

async fn post(base: &str, path: &str, who: Option<&str>, body: Option<Value>) -> (u16, String) {
    let mut req = client().post(format!("{base}{path}"));
    if let Some(who) = who {
        req = req.header("x-forwarded-user", who);
    }
    if let Some(body) = body {
        req = req
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let res = req.send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

fn keys(page: &Value) -> Vec<String> {
    page["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["idempotency_key"].as_str().unwrap().to_owned())
        .collect()
}

fn held(tag: &str, n: u32) -> CountIn {
    CountIn {
        tag: tag.into(),
        n,
        sleep_ms: 20,
        hold: true,
        ..CountIn::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_the_rule_does_not_name_gets_403_on_every_console_route() {
    let (base, flow, _dir) = app().await;
    let run = flow
        .as_user(&user("bob"))
        .start(count, held("console-403", 1))
        .await
        .unwrap();
    gate("console-403").wait_progress(1).await;
    let ik = run.idempotency_key.as_str().to_owned();
    let gets = [
        "/console".to_owned(),
        "/console/console.js".to_owned(),
        "/console/api/runs".to_owned(),
        "/console/api/runs?state=running".to_owned(),
        "/console/api/counts".to_owned(),
        "/console/api/health".to_owned(),
        format!("/console/api/runs/{ik}"),
        format!("/console/api/runs/{ik}/events"),
        format!("/console/api/runs/{ik}/steps/tick%230"),
        "/console/no/such/route".to_owned(),
    ];
    let posts =
        ["stop", "resume", "cancel", "signals/go"].map(|a| format!("/console/api/runs/{ik}/{a}"));
    for who in [None, Some("bob"), Some("Admin")] {
        for path in &gets {
            let (status, body) = get(&base, path, who).await;
            assert_eq!(status, 403, "GET {path} as {who:?}: {body}");
            assert!(body.contains("\"code\":\"forbidden\""), "{body}");
            assert!(
                body.contains("ConsoleAccess"),
                "says what grants it: {body}"
            );
        }
        for path in &posts {
            let (status, body) = post(&base, path, who, Some(json!({"reason": "no"}))).await;
            assert_eq!(status, 403, "POST {path} as {who:?}: {body}");
        }
    }
    // Nothing a refused request asked for happened.
    let status = flow
        .as_user(&user("bob"))
        .status(&run.idempotency_key)
        .await
        .unwrap();
    assert_eq!(status.status, taskflow::TaskState::Running);

    // With no rule, nobody gets in, the operator of the other console included.
    for path in ["/closed", "/closed/api/runs", "/closed/api/health"] {
        assert_eq!(get(&base, path, Some("admin")).await.0, 403, "{path}");
    }
    // The role header rule: the group must be one of the header's comma-separated values.
    let as_group = |groups: &'static str| {
        client()
            .get(format!("{base}/groups/api/counts"))
            .header("x-forwarded-groups", groups)
            .send()
    };
    assert_eq!(as_group("staff, operators").await.unwrap().status(), 200);
    assert_eq!(
        as_group("staff,operators-lite").await.unwrap().status(),
        403
    );
    // The operator gets the page and its module.
    let (status, page) = get(&base, "/console", Some("admin")).await;
    assert_eq!(status, 200);
    assert!(page.contains("taskflow console"), "{page}");
    let (status, module) = get(&base, "/console/console.js", Some("admin")).await;
    assert_eq!(status, 200);
    assert!(module.contains("export function start"));
    gate("console-403").release.send_replace(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listing_spans_owners_filters_and_its_cursor_is_stable_under_inserts() {
    let (base, flow, _dir) = app().await;
    let quick = |tag: String| CountIn {
        tag,
        n: 1,
        ..CountIn::default()
    };
    let mut finished = Vec::new();
    for (who, n) in [("alice", 5), ("bob", 3)] {
        let scope = flow.as_user(&user(who));
        for i in 0..n {
            let run = scope
                .start(count, quick(format!("list-{who}-{i}")))
                .await
                .unwrap();
            scope.wait(&run).await.unwrap();
            finished.push(run.idempotency_key.as_str().to_owned());
        }
    }
    for i in 0..2 {
        let run = flow
            .start(count, quick(format!("list-service-{i}")))
            .await
            .unwrap();
        flow.wait(&run).await.unwrap();
        finished.push(run.idempotency_key.as_str().to_owned());
    }
    let waiting = flow
        .as_user(&user("bob"))
        .start(await_signal, quick("list-waiting".into()))
        .await
        .unwrap();
    let waiting_ik = waiting.idempotency_key.as_str().to_owned();

    // Newest first, across every owner.
    let first = get_json(&base, "/console/api/runs?limit=4").await;
    let page1 = keys(&first);
    assert_eq!(page1.len(), 4);
    assert_eq!(page1[0], waiting_ik, "the newest run comes first");
    let ids: Vec<u64> = first["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["task_id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");
    let owners: HashSet<Option<String>> = get_json(&base, "/console/api/runs").await["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["owner"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        owners,
        HashSet::from([Some("alice".into()), Some("bob".into()), None])
    );

    // Runs started after the first page do not shift the pages after it.
    for i in 0..3 {
        let scope = flow.as_user(&user("alice"));
        let run = scope
            .start(count, quick(format!("list-late-{i}")))
            .await
            .unwrap();
        scope.wait(&run).await.unwrap();
    }
    let mut seen = page1.clone();
    let mut cursor = first["next_cursor"].as_str().unwrap().to_owned();
    loop {
        let page = get_json(&base, &format!("/console/api/runs?limit=4&cursor={cursor}")).await;
        seen.extend(keys(&page));
        match page["next_cursor"].as_str() {
            Some(next) => next.clone_into(&mut cursor),
            None => break,
        }
    }
    let mut expected = finished.clone();
    expected.push(waiting_ik.clone());
    assert_eq!(seen.len(), expected.len(), "each run once: {seen:?}");
    assert_eq!(
        seen.iter().collect::<HashSet<_>>(),
        expected.iter().collect::<HashSet<_>>()
    );

    // Filters: owner, the service identity, state, task, key prefix; together with a limit.
    let alice = get_json(&base, "/console/api/runs?owner=alice").await;
    assert_eq!(keys(&alice).len(), 8);
    assert!(
        alice["runs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["owner"] == "alice")
    );
    assert_eq!(
        keys(&get_json(&base, "/console/api/runs?owner=-").await).len(),
        2
    );
    let running = get_json(&base, "/console/api/runs?state=running").await;
    assert_eq!(keys(&running), std::slice::from_ref(&waiting_ik));
    let either = get_json(&base, "/console/api/runs?state=running,suspended&owner=bob").await;
    assert_eq!(keys(&either), std::slice::from_ref(&waiting_ik));
    let by_task = get_json(&base, "/console/api/runs?task=await-signal").await;
    assert_eq!(keys(&by_task), std::slice::from_ref(&waiting_ik));
    let prefix = &finished[3][..5];
    let by_key = get_json(&base, &format!("/console/api/runs?key={prefix}")).await;
    let found = keys(&by_key);
    assert!(found.contains(&finished[3]), "{found:?}");
    assert!(found.iter().all(|k| k.starts_with(prefix)), "{found:?}");
    let completed = get_json(&base, "/console/api/runs?state=completed&limit=3").await;
    assert_eq!(keys(&completed).len(), 3);
    assert!(completed["next_cursor"].is_string());

    // Counts by state, every state named.
    let counts = get_json(&base, "/console/api/counts").await;
    assert_eq!(counts["completed"], 13, "{counts}");
    assert_eq!(counts["running"], 1, "{counts}");
    assert_eq!(counts["failed"], 0, "{counts}");
    assert_eq!(counts.as_object().unwrap().len(), 6, "{counts}");

    // Bad parameters are named.
    for (query, field) in [
        ("state=bogus", "state"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("cursor=abc", "cursor"),
        ("colour=red", "colour"),
    ] {
        let (status, body) = get(&base, &format!("/console/api/runs?{query}"), Some("admin")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(
            body.contains(&format!("\"path\":\"{field}\"")),
            "{query}: {body}"
        );
    }
    let long = format!("/console/api/runs?owner={}", "a".repeat(300));
    let (status, body) = get(&base, &long, Some("admin")).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains(r#""path":"owner""#), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_sees_a_run_in_full_and_stops_resumes_and_signals_another_owners_runs() {
    let (base, flow, _dir) = app().await;
    let bob = flow.as_user(&user("bob"));
    let run = bob.start(count, held("console-detail", 2)).await.unwrap();
    gate("console-detail").wait_progress(2).await;
    let ik = run.idempotency_key.as_str().to_owned();

    let detail = get_json(&base, &format!("/console/api/runs/{ik}")).await;
    assert_eq!(detail["owner"], "bob");
    assert_eq!(detail["status"], "running");
    assert_eq!(detail["input"]["tag"], "console-detail");
    let steps = detail["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{detail}");
    for (i, step) in steps.iter().enumerate() {
        assert_eq!(step["key"], format!("tick#{i}"));
        assert_eq!(step["origin"], "executed");
        assert_eq!(step["attempt"], 1);
        assert!(step["duration_ms"].as_u64().unwrap() >= 20, "{step}");
        assert!(step["at"].as_str().unwrap().ends_with('Z'), "{step}");
        assert_eq!(step["size"], 1, "{step}");
    }
    let value = get_json(&base, &format!("/console/api/runs/{ik}/steps/tick%231")).await;
    assert_eq!(value["value"], 1);
    assert_eq!(
        get(
            &base,
            &format!("/console/api/runs/{ik}/steps/tick%239"),
            Some("admin")
        )
        .await
        .0,
        404
    );

    // Its events, as the owner would see them.
    let res = client()
        .get(format!("{base}/console/api/runs/{ik}/events"))
        .header("x-forwarded-user", "admin")
        .send()
        .await
        .unwrap();
    let frames = first_frames(res, 3).await;
    let names: Vec<&str> = frames.iter().map(|f| f.event.as_str()).collect();
    assert_eq!(names, ["ready", "tick", "tick"]);

    // Stop with a reason, then resume: the owner sees both; the new attempt replays its steps.
    let (status, body) = post(
        &base,
        &format!("/console/api/runs/{ik}/stop"),
        Some("admin"),
        Some(json!({"reason": "maintenance"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["status"], "suspended");
    let theirs = bob.status(&run.idempotency_key).await.unwrap();
    assert_eq!(theirs.suspended_reason.as_deref(), Some("maintenance"));
    let (status, body) = post(
        &base,
        &format!("/console/api/runs/{ik}/stop"),
        Some("admin"),
        None,
    )
    .await;
    assert_eq!(status, 200, "stop is idempotent: {body}");
    let (status, body) = post(
        &base,
        &format!("/console/api/runs/{ik}/resume"),
        Some("admin"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let d = get_json(&base, &format!("/console/api/runs/{ik}")).await;
        if d["attempt"] == 2 && d["status"] == "running" {
            let origins: Vec<&str> = d["steps"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["origin"].as_str().unwrap())
                .collect();
            assert_eq!(origins, ["replayed", "replayed"], "{d}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not resumed: {d}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gate("console-detail").release.send_replace(true);
    let output = tokio::time::timeout(Duration::from_secs(20), bob.wait(&run))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(output.n, 2);
    let (status, body) = post(
        &base,
        &format!("/console/api/runs/{ik}/cancel"),
        Some("admin"),
        None,
    )
    .await;
    assert_eq!(status, 409, "a completed run cannot be cancelled: {body}");
    assert!(body.contains("invalid_state"), "{body}");

    // A signal to another owner's waiting run: 202, delivered once, the run ends with it.
    let waiting = bob
        .start(
            await_signal,
            CountIn {
                tag: "console-signal".into(),
                ..CountIn::default()
            },
        )
        .await
        .unwrap();
    let wik = waiting.idempotency_key.as_str().to_owned();
    for _ in 0..2 {
        let res = client()
            .post(format!("{base}/console/api/runs/{wik}/signals/go"))
            .header("x-forwarded-user", "admin")
            .header("content-type", "application/json")
            .header("idempotency-key", "console-once")
            .body(json!({"from": "the console"}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202);
    }
    let output = tokio::time::timeout(
        Duration::from_secs(20),
        bob.wait_json(&waiting.idempotency_key),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(output, json!({"from": "the console"}));
    // After the end, a retry with the same key still answers as the first call did (the
    // sender cannot tell a lost answer from a lost request); a new signal is refused.
    for (key, expected) in [("console-once", 202), ("another-key", 409)] {
        let res = client()
            .post(format!("{base}/console/api/runs/{wik}/signals/go"))
            .header("x-forwarded-user", "admin")
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body("1")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), expected, "{key}");
    }
    // An unknown key is 404, as on the task routes.
    let unknown = "A".repeat(ik.len());
    assert_eq!(
        get(
            &base,
            &format!("/console/api/runs/{unknown}"),
            Some("admin")
        )
        .await
        .0,
        404
    );

    // Health: the store is fine, the commit histogram counted the commits made above.
    let health = get_json(&base, "/console/api/health").await;
    assert_eq!(health["store"], "ok");
    let commits: u64 = health["commit_micros"]["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap())
        .sum::<u64>()
        + health["commit_micros"]["above"].as_u64().unwrap();
    assert!(commits > 0, "{health}");
    assert_eq!(
        commits,
        health["counters"]["wal_commits_total"].as_u64().unwrap()
    );
    assert!(
        health["counters"]["events_committed_total"]
            .as_u64()
            .unwrap()
            >= 4
    );
}
