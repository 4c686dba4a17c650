//! The real `kubectl` against the double: lists, single gets, pagination, watches, wrong tokens,
//! RBAC denials, several contexts and a custom resource.

mod support;

use eastwest_kube_double::{
    ApiServer, ApiServerOptions, DEFAULT_USER, Kubeconfig, ResourceType, fixtures,
};
use serde_json::{Value, json};
use support::{Kubectl, WAIT, item_names, names_of_kind};
use tokio::io::AsyncReadExt;

async fn mesh_server() -> ApiServer {
    let server = ApiServer::start(ApiServerOptions::default()).await.unwrap();
    server.apply_all(fixtures::mesh()).await.unwrap();
    server
}

#[tokio::test]
async fn lists_return_the_fixture_objects() {
    let server = mesh_server().await;
    let kubectl = Kubectl::new(&server);
    let fixtures = fixtures::mesh();

    let services: Value =
        serde_json::from_str(&kubectl.ok(&["get", "services", "-A", "-o", "json"]).await).unwrap();
    assert_eq!(item_names(&services), names_of_kind(&fixtures, "Service"));
    assert_eq!(
        services["items"][0]["kind"], "Service",
        "kubectl restores item kinds"
    );

    let slices: Value = serde_json::from_str(
        &kubectl
            .ok(&["get", "endpointslices", "-A", "-o", "json"])
            .await,
    )
    .unwrap();
    assert_eq!(
        item_names(&slices),
        names_of_kind(&fixtures, "EndpointSlice")
    );
    let terminating = slices["items"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["conditions"]["terminating"] == true)
        .count();
    assert_eq!(terminating, 1);

    let namespaces = kubectl.ok(&["get", "ns", "-o", "name"]).await;
    assert_eq!(
        namespaces.lines().collect::<Vec<_>>(),
        [
            "namespace/bookinfo",
            "namespace/db",
            "namespace/istio-system"
        ]
    );
}

#[tokio::test]
async fn gets_one_service_by_name() {
    let server = mesh_server().await;
    let kubectl = Kubectl::new(&server);

    let table = kubectl
        .ok(&["get", "svc", "-n", "bookinfo", "reviews"])
        .await;
    assert!(
        table
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("reviews ")),
        "{table}"
    );
    let target = kubectl
        .ok(&[
            "get",
            "svc",
            "-n",
            "bookinfo",
            "reviews",
            "-o",
            "jsonpath={.spec.ports[0].targetPort}",
        ])
        .await;
    assert_eq!(target, "http-web");
    let headless = kubectl
        .ok(&[
            "get",
            "service",
            "mysql",
            "-n",
            "db",
            "-o",
            "jsonpath={.spec.clusterIP}",
        ])
        .await;
    assert_eq!(headless, "None");

    let missing = kubectl
        .fails(&["get", "svc", "-n", "bookinfo", "nope"])
        .await;
    assert!(
        missing.contains(r#"services "nope" not found"#),
        "{missing}"
    );
}

#[tokio::test]
async fn chunked_lists_read_every_page() {
    let server = mesh_server().await;
    let kubectl = Kubectl::new(&server);

    let out = kubectl
        .ok(&["get", "services", "-A", "--chunk-size=2", "-o", "json"])
        .await;
    let services: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(item_names(&services).len(), 6);

    let pages: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.is_list_of("services") && r.param("limit").as_deref() == Some("2"))
        .collect();
    assert_eq!(pages.len(), 3, "{pages:#?}");
    assert_eq!(
        pages
            .iter()
            .filter(|r| r.param("continue").is_some())
            .count(),
        2
    );
}

#[tokio::test]
async fn watch_prints_changes_made_after_it_opened() {
    let server = mesh_server().await;
    let kubectl = Kubectl::new(&server);
    let mut child = kubectl
        .command(&[
            "get",
            "endpointslices",
            "-A",
            "-w",
            "--output-watch-events",
            "-o",
            "json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();

    let opened = server.wait_for_request(|r| r.is_open_watch_of("endpointslices"));
    let opened = tokio::time::timeout(WAIT, opened)
        .await
        .expect("kubectl opened no watch");
    assert!(
        opened.param("resourceVersion").is_some(),
        "kubectl watches from its list's RV: {opened:?}"
    );

    let [svc, slice] = fixtures::local_service("bookinfo", "echo", 80, 8080, &["127.0.0.2"]);
    server.apply(svc).await.unwrap();
    server.apply(slice).await.unwrap();
    server
        .delete("endpointslices", "bookinfo", "reviews-9qk4w")
        .await
        .unwrap();

    // kubectl prints one JSON document per event, compact or indented depending on its version.
    let mut seen = Vec::new();
    let mut buffer = Vec::new();
    let wanted = [("ADDED", "echo-local"), ("DELETED", "reviews-9qk4w")];
    let read = async {
        let mut chunk = [0u8; 8192];
        loop {
            let n = stdout.read(&mut chunk).await.unwrap();
            assert!(n > 0, "kubectl's output ended early");
            buffer.extend_from_slice(&chunk[..n]);
            let mut documents = serde_json::Deserializer::from_slice(&buffer).into_iter::<Value>();
            for event in documents.by_ref() {
                let Ok(event) = event else { break };
                let name = event["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                seen.push((event["type"].as_str().unwrap().to_owned(), name));
            }
            let consumed = documents.byte_offset();
            buffer.drain(..consumed);
            if wanted
                .iter()
                .all(|(t, n)| seen.iter().any(|(st, sn)| st == t && sn == n))
            {
                return;
            }
        }
    };
    tokio::time::timeout(WAIT, read)
        .await
        .unwrap_or_else(|_| panic!("kubectl printed no events for the changes; saw {seen:?}"));
    // The list's objects came first, as synthetic ADDED events.
    assert_eq!(
        seen.iter().filter(|(t, _)| t == "ADDED").count(),
        9,
        "{seen:?}"
    );
}

#[tokio::test]
async fn wrong_and_rotated_tokens_are_refused() {
    let server = mesh_server().await;
    let wrong = Kubectl::with_kubeconfig(
        &Kubeconfig::new().context(server.context("c").with_token("wrong")),
    );
    let stderr = wrong.fails(&["get", "services", "-A"]).await;
    assert!(
        stderr.contains("You must be logged in to the server"),
        "{stderr}"
    );
    assert!(
        server
            .requests()
            .iter()
            .any(|r| !r.authenticated && r.status == 401)
    );

    let old = Kubectl::new(&server);
    let new = Kubectl::with_kubeconfig(
        &Kubeconfig::new().context(server.context("c").with_token("rotated")),
    );
    server.add_token("rotated", DEFAULT_USER);
    server.revoke_token(server.token());
    new.ok(&["get", "services", "-A"]).await;
    let stderr = old.fails(&["get", "services", "-A"]).await;
    assert!(
        stderr.contains("You must be logged in to the server"),
        "{stderr}"
    );
}

#[tokio::test]
async fn forbidden_lists_print_rbacs_message() {
    let server = mesh_server().await;
    let kubectl = Kubectl::new(&server);

    server.forbid("services", "list").unwrap();
    let stderr = kubectl.fails(&["get", "services", "-A"]).await;
    assert!(
        stderr.contains(
            r#"services is forbidden: User "system:serviceaccount:istio-system:eastwest" cannot list resource "services" in API group "" at the cluster scope"#
        ),
        "{stderr}"
    );

    server.allow_all();
    server.forbid_in("endpointslices", "list", "db").unwrap();
    kubectl
        .ok(&["get", "endpointslices", "-n", "bookinfo"])
        .await;
    let stderr = kubectl.fails(&["get", "endpointslices", "-n", "db"]).await;
    assert!(
        stderr.contains(
            r#"endpointslices.discovery.k8s.io is forbidden: User "system:serviceaccount:istio-system:eastwest" cannot list resource "endpointslices" in API group "discovery.k8s.io" in the namespace "db""#
        ),
        "{stderr}"
    );
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.authenticated && !r.authorized())
    );
}

#[tokio::test]
async fn one_kubeconfig_reaches_two_clusters() {
    let east = mesh_server().await;
    let west = ApiServer::start(ApiServerOptions::default()).await.unwrap();
    west.apply_all(fixtures::local_service(
        "west-ns",
        "only-in-west",
        80,
        8080,
        &["127.0.0.3"],
    ))
    .await
    .unwrap();
    let config = Kubeconfig::new()
        .context(east.context("east"))
        .context(west.context("west"))
        .current("east");
    let kubectl = Kubectl::with_kubeconfig(&config);

    let in_west = kubectl
        .ok(&["--context", "west", "get", "svc", "-A", "-o", "name"])
        .await;
    assert_eq!(in_west.trim(), "service/only-in-west");
    let in_east = kubectl.ok(&["get", "svc", "-A", "-o", "name"]).await;
    assert_eq!(in_east.lines().count(), 6);
}

#[tokio::test]
async fn registered_custom_resources_are_served() {
    let server =
        ApiServer::start(ApiServerOptions::default().resource(ResourceType::destination_rules()))
            .await
            .unwrap();
    server
        .apply(json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": {"name": "reviews", "namespace": "bookinfo"},
            "spec": {"host": "reviews.bookinfo.svc.cluster.local", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}}
        }))
        .await
        .unwrap();
    let kubectl = Kubectl::new(&server);
    let host = kubectl
        .ok(&[
            "get",
            "dr",
            "-n",
            "bookinfo",
            "reviews",
            "-o",
            "jsonpath={.spec.host}",
        ])
        .await;
    assert_eq!(host, "reviews.bookinfo.svc.cluster.local");
    let version: Value =
        serde_json::from_str(&kubectl.ok(&["version", "-o", "json"]).await).unwrap();
    assert_eq!(version["serverVersion"]["gitVersion"], "v1.32.0");
}

#[tokio::test]
async fn a_test_blocking_its_own_runtime_still_gets_answers() {
    // The server runs on its own runtime: a blocking call here (this test's runtime has one
    // thread) does not stall it.
    let server = mesh_server().await;
    let kubectl = Kubectl::new(&server);
    let out = kubectl
        .command(&[
            "--request-timeout=20s",
            "get",
            "svc",
            "-n",
            "db",
            "-o",
            "name",
        ])
        .as_std_mut()
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "service/legacy-db\nservice/mysql\n"
    );
}
