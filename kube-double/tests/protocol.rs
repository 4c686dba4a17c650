//! The wire protocol through a plain HTTP/1.1 client: status bodies, discovery, continue tokens,
//! injected faults, availability and the request log. Watch streams are in `watch.rs`.

mod support;

use eastwest_kube_double::ResourceType;
use hyper::StatusCode;
use serde_json::json;
use support::{End, SLICES, WAIT, WatchStream, get, get_with, server, slice, summary};

#[tokio::test]
async fn errors_are_status_objects() {
    let server = server().await;
    let (status, headers, body) = get_with(&server, "/api/v1/services", Some("nope")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(
        body,
        r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}"#
    );
    let (status, _, _) = get_with(&server, "/api", None).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "discovery needs a token too"
    );

    let (status, body) = get(&server, "/api/v1/namespaces/x/services/missing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["reason"], "NotFound");
    assert_eq!(
        body["details"],
        json!({"name": "missing", "kind": "services"})
    );

    server.forbid("endpointslices", "watch").unwrap();
    let (status, body) = get(&server, &format!("{SLICES}?watch=1")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["reason"], "Forbidden");
    assert_eq!(body["details"]["group"], "discovery.k8s.io");

    server.fail_next(2, 503);
    assert_eq!(
        get(&server, "/api/v1/services").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        get(&server, "/api").await.0,
        StatusCode::OK,
        "discovery is not failed"
    );
    let (status, body) = get(&server, "/api/v1/services").await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("ServiceUnavailable"))
    );
    assert_eq!(get(&server, "/api/v1/services").await.0, StatusCode::OK);
}

#[tokio::test]
async fn discovery_lists_registered_types() {
    let server = server().await;
    server.register(ResourceType::destination_rules());
    let (_, core) = get(&server, "/api/v1").await;
    let names: Vec<&str> = core["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["namespaces", "nodes", "pods", "services"]);
    assert_eq!(core["resources"][3]["shortNames"], json!(["svc"]));
    let (_, groups) = get(&server, "/apis").await;
    let groups: Vec<&str> = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(groups, ["discovery.k8s.io", "networking.istio.io"]);
    let (_, slices) = get(&server, "/apis/discovery.k8s.io/v1").await;
    assert_eq!(slices["groupVersion"], "discovery.k8s.io/v1");
    assert_eq!(slices["resources"][0]["kind"], "EndpointSlice");
    let (status, _) = get(&server, "/apis/apps/v1").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn continue_tokens_page_consistently_and_expire() {
    let server = server().await;
    for i in 0..5 {
        server
            .apply(slice(&format!("s{i}"), "127.0.0.2"))
            .await
            .unwrap();
    }
    let (_, first) = get(&server, &format!("{SLICES}?limit=2")).await;
    assert_eq!(first["kind"], "EndpointSliceList");
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    assert_eq!(first["metadata"]["remainingItemCount"], 3);
    let token = first["metadata"]["continue"].as_str().unwrap().to_owned();

    server.delete("endpointslices", "ns", "s3").await.unwrap();
    let (_, second) = get(&server, &format!("{SLICES}?limit=2&continue={token}")).await;
    let names: Vec<&str> = second["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["s2", "s3"],
        "the list stays at the first page's resourceVersion"
    );
    assert_eq!(
        second["metadata"]["resourceVersion"],
        first["metadata"]["resourceVersion"]
    );

    server.compact().await;
    let (status, body) = get(&server, &format!("{SLICES}?limit=2&continue={token}")).await;
    assert_eq!(status, StatusCode::GONE);
    assert_eq!(
        (body["reason"].as_str(), body["code"].as_u64()),
        (Some("Expired"), Some(410))
    );
}

#[tokio::test]
async fn an_unavailable_server_keeps_its_port_but_serves_nothing() {
    let server = server().await;
    let mut watch = WatchStream::open(&server, &format!("{SLICES}?watch=1")).await;
    server.set_available(false);
    assert_eq!(watch.end().await, End::Cut);
    let tcp = tokio::net::TcpStream::connect(server.addr()).await;
    assert!(tcp.is_ok(), "the port stays reserved");
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(
        WAIT,
        tokio::io::AsyncReadExt::read(&mut tcp.unwrap(), &mut buf),
    )
    .await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "closed at once: {read:?}"
    );

    server.set_available(true);
    assert_eq!(get(&server, "/api/v1/services").await.0, StatusCode::OK);
}

#[tokio::test]
async fn the_request_log_can_be_awaited() {
    let server = server().await;
    let waiter = server.wait_for_request(|r| r.is_open_watch_of("endpointslices"));
    let opener = async {
        let mut watch = WatchStream::open(
            &server,
            &format!("{SLICES}?watch=1&allowWatchBookmarks=true"),
        )
        .await;
        server.apply(slice("a", "127.0.0.2")).await.unwrap();
        watch.event().await
    };
    let (record, event) = tokio::time::timeout(WAIT, async { tokio::join!(waiter, opener) })
        .await
        .unwrap();
    assert_eq!(record.param("allowWatchBookmarks").as_deref(), Some("true"));
    assert!(record.authorized());
    assert_eq!(summary(&event).1, "a");
}
