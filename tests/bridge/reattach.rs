//! Re-attaching: by re-POST and by GET, with `Last-Event-ID` and `?last_event_id=`.

use serde_json::json;

use crate::support::*;

async fn finished_run(s: &Server, tag: &str, n: u32) -> String {
    let r = post(&s.base, &json!({"tag": tag, "n": n})).await;
    let ik = ik_of(&r);
    frames(r).await;
    ik
}

async fn get_events(
    s: &Server,
    ik: &str,
    header: Option<&str>,
    query: Option<&str>,
) -> reqwest::Response {
    let mut url = format!("{}/api/tasks/{ik}/events", s.base);
    if let Some(q) = query {
        url.push_str("?last_event_id=");
        url.push_str(q);
    }
    let mut req = client().get(url);
    if let Some(h) = header {
        req = req.header("last-event-id", h);
    }
    req.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repost_attaches_and_replays() {
    let s = server().await;
    let input = json!({"tag": "ra-repost", "n": 2});
    let ik = finished_run(&s, "ra-repost", 2).await;
    let again = post(&s.base, &input).await;
    assert_eq!(ik_of(&again), ik);
    let f = frames(again).await;
    assert_eq!(f[0].data["attached"], true);
    assert_eq!(names(&f), ["ready", "tick", "tick", "completed"]);
    assert_eq!(ids(&f), [1, 2, 3]);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_event_id_header_and_query_resume_exactly_after_k() {
    let s = server().await;
    // A live run, so a Last-Event-ID at or past the end is not answered with 204.
    let input = json!({"tag": "ra-live", "n": 5, "hold": true});
    let r = post(&s.base, &input).await;
    let ik = ik_of(&r);
    drop(r);
    gate("ra-live").wait_progress(5).await;
    for (header, query, expect) in [
        (Some("2"), None, vec![3, 4, 5]),
        (None, Some("3"), vec![4, 5]),
        (Some("1"), Some("4"), vec![2, 3, 4, 5]),
    ] {
        let f = first_frames(get_events(&s, &ik, header, query).await, 1 + expect.len()).await;
        assert_eq!(ids(&f), expect, "header {header:?} query {query:?}");
        assert_eq!(f[0].event, "ready");
    }
    // Malformed or out-of-range values mean "from the start", and never panic.
    let long = "1".repeat(64 * 1024);
    for bad in [
        "abc",
        "-1",
        "+5",
        "9007199254740992",
        "",
        "1e3",
        "6",
        long.as_str(),
    ] {
        let f = first_frames(get_events(&s, &ik, Some(bad), None).await, 6).await;
        assert_eq!(ids(&f), [1, 2, 3, 4, 5], "Last-Event-ID {:.12}", bad);
        // URLs have a practical length limit on the client side; the header takes 64 KiB.
        let query = &bad[..bad.len().min(2048)];
        let f = first_frames(get_events(&s, &ik, None, Some(query)).await, 6).await;
        assert_eq!(ids(&f), [1, 2, 3, 4, 5], "last_event_id {:.12}", bad);
    }
    gate("ra-live").release.send_replace(true);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_run_already_seen_answers_204() {
    let s = server().await;
    let ik = finished_run(&s, "ra-204", 2).await;
    for seen in ["3", "4", "100"] {
        let r = get_events(&s, &ik, Some(seen), None).await;
        assert_eq!(r.status(), 204, "Last-Event-ID {seen}");
    }
    let r = get_events(&s, &ik, Some("2"), None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(names(&frames(r).await), ["ready", "completed"]);
    // Re-POST with Last-Event-ID at the end: also 204.
    let r = client()
        .post(format!("{}/api/tasks/count", s.base))
        .header("last-event-id", "3")
        .json(&json!({"tag": "ra-204", "n": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    s.shutdown().await;
}
