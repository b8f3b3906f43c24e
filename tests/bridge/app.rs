//! A service with its own `Router<AppState>`, its own auth middleware and its own handler, as a
//! team adopting taskflow would write it: the ready-made routes nest into it, see the users
//! its middleware authenticates, and custom handlers answer in the routes' error shape.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use taskflow::axum::{HttpError, Input, SseResponse};
use taskflow::{ExecuteTaskSettings, TaskFlow, UserContext, UserId};

use crate::support::*;

#[derive(Clone)]
struct AppState {
    flow: TaskFlow,
}

/// The app's own auth: `Authorization: Bearer <user>` becomes the request's user.
async fn auth(mut request: Request, next: Next) -> Response {
    let user = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|id| UserId::new(id).ok());
    if let Some(id) = user {
        request.extensions_mut().insert(UserContext::new(id));
    }
    next.run(request).await
}

/// The app's own endpoint: a user-owned run started from a handler.
async fn place_order(
    State(app): State<AppState>,
    user: UserContext,
    Input(order): Input<CountIn>,
) -> Result<SseResponse, HttpError> {
    if order.n > 100 {
        return Err(HttpError::invalid_input(
            "at most 100 items",
            Some("n".into()),
        ));
    }
    Ok(app
        .flow
        .as_user(&user)
        .execute_task(count, order, ExecuteTaskSettings::default())
        .await)
}

async fn app_server() -> (String, TaskFlow, taskflow::testing::TempDataDir) {
    let dir = taskflow::testing::TempDataDir::new();
    let flow = dir.builder().register(count).build().await.unwrap();
    let app: axum::Router<AppState> = axum::Router::new()
        .route("/orders", axum::routing::post(place_order))
        .nest("/api", taskflow::axum::routes(flow.clone()));
    let app = app
        .layer(axum::middleware::from_fn(auth))
        .with_state(AppState { flow: flow.clone() });
    let base = serve_app(app).await;
    (base, flow, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_started_by_the_apps_handler_show_on_the_routes_for_that_user() {
    let (base, flow, _dir) = app_server().await;
    let r = client()
        .post(format!("{base}/orders"))
        .header("authorization", "Bearer ann")
        .json(&json!({"tag": "app-order", "n": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let ik = ik_of(&r);
    let f = frames(r).await;
    assert_eq!(names(&f), ["ready", "tick", "tick", "completed"]);
    // The routes see ann's run, and only ann's.
    let list = |user: Option<&str>| {
        let mut req = client().get(format!("{base}/api/tasks"));
        if let Some(u) = user {
            req = req.header("authorization", format!("Bearer {u}"));
        }
        async move {
            req.send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    let ann = list(Some("ann")).await;
    assert_eq!(ann["tasks"][0]["idempotency_key"], ik.as_str());
    assert_eq!(
        ann["next_cursor"],
        serde_json::Value::Null,
        "one page holds it all"
    );
    // Paging: ?limit=&cursor=, with 400s that name the parameter.
    let page = |query: &str| {
        let req = client()
            .get(format!("{base}/api/tasks?{query}"))
            .header("authorization", "Bearer ann");
        async move {
            let r = req.send().await.unwrap();
            (
                r.status().as_u16(),
                r.json::<serde_json::Value>().await.unwrap(),
            )
        }
    };
    let (code, one) = page("limit=1").await;
    assert_eq!(code, 200);
    assert_eq!(one["tasks"].as_array().unwrap().len(), 1);
    let cursor = one["next_cursor"]
        .as_str()
        .expect("a full page has a cursor")
        .to_owned();
    let (code, rest) = page(&format!("limit=1&cursor={cursor}")).await;
    assert_eq!((code, rest["tasks"].clone()), (200, json!([])));
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=x", "limit"),
        ("limit=1001", "limit"),
        ("cursor=abc", "cursor"),
    ] {
        let (code, body) = page(query).await;
        assert_eq!(code, 400, "{query}");
        assert_eq!(body["error"]["code"], "invalid_input", "{query}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with(field),
            "{query}: {body}"
        );
    }
    assert_eq!(list(Some("bob")).await["tasks"], json!([]));
    // Without a user the routes refuse (the default; no anonymous opt-in here).
    assert_eq!(
        list(None).await["error"]["code"],
        "unauthenticated",
        "anonymous"
    );
    let status = client()
        .get(format!("{base}/api/tasks/{ik}"))
        .header("authorization", "Bearer ann")
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), 200);
    flow.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_handlers_answer_in_the_routes_error_shape() {
    let (base, flow, _dir) = app_server().await;
    let send = |body: &'static str, ctype: &'static str, user: bool| {
        let mut req = client()
            .post(format!("{base}/orders"))
            .header("content-type", ctype)
            .body(body);
        if user {
            req = req.header("authorization", "Bearer ann");
        }
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let ctype = r.headers()["content-type"].to_str().unwrap().to_owned();
            (status, ctype, r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (status, ctype, body) =
        send(r#"{"tag": "x", "n": "many"}"#, "application/json", true).await;
    assert_eq!((status, ctype.as_str()), (400, "application/json"));
    assert_eq!(body["error"]["code"], "invalid_input");
    assert_eq!(body["error"]["path"], "n");
    let (status, _, body) = send(r#"{"n": 1}"#, "text/plain", true).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (415, Some("unsupported_media_type"))
    );
    let (status, _, body) = send(r#"{"n": 1}"#, "application/json", false).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthenticated"))
    );
    let (status, _, body) = send("[1, 2]", "application/json", true).await;
    assert_eq!(
        (status, body["error"]["message"].as_str()),
        (400, Some("invalid type: an array, expected an object"))
    );
    let (status, _, body) = send(r#"{"n": 101}"#, "application/json", true).await;
    assert_eq!((status, body["error"]["path"].as_str()), (400, Some("n")));
    flow.shutdown().await.unwrap();
}

// `SseResponse` is a response like any other.
const _: fn(SseResponse) -> Response = IntoResponse::into_response;
