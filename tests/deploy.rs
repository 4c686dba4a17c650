//! What ships: every kustomize overlay under deploy/ rendered by `kubectl kustomize` (the client
//! the seeds use), and the properties that istiod, the other clusters and a cluster's admission
//! rely on asserted on the rendered objects; the Dockerfile's build and run stages; the host
//! mode's config and systemd unit. A careless edit to any of them fails here.

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `kubectl kustomize DIR`, parsed: one JSON value per rendered object.
fn render(dir: &Path) -> Vec<Value> {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("kubectl on PATH (Debian: kubernetes-client)");
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_saphyr::from_multiple(&String::from_utf8(out.stdout).unwrap()).unwrap()
}

fn overlay(name: &str) -> Vec<Value> {
    render(&repo().join("deploy/overlays").join(name))
}

fn one<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let found: Vec<_> = objects
        .iter()
        .filter(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .collect();
    assert_eq!(found.len(), 1, "exactly one {kind} {name}");
    found[0]
}

/// A generated object's name carries a hash suffix: find it by its prefix.
fn generated<'a>(objects: &'a [Value], kind: &str, prefix: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| {
            o["kind"] == kind
                && o["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with(&format!("{prefix}-")))
        })
        .unwrap_or_else(|| panic!("a generated {kind} {prefix}-<hash>"))
}

/// The entry called `name` of a list of named objects (volumes, volumeMounts).
fn named<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .and_then(|l| l.iter().find(|x| x["name"] == name))
        .unwrap_or_else(|| panic!("an entry named {name} in {list}"))
}

fn strs(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("a list: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

const OVERLAYS: [&str; 3] = ["loadbalancer", "nodeport", "hostnetwork"];

/// What every overlay must keep: the names, labels and ports Istio and the remote clusters know,
/// the probe, the security context, the RBAC, the config the pods read.
fn assert_common(name: &str, objects: &[Value]) {
    for o in objects {
        if o["kind"] != "ClusterRole" && o["kind"] != "ClusterRoleBinding" {
            assert_eq!(
                o["metadata"]["namespace"], "istio-system",
                "{name}: {} {} outside istio-system",
                o["kind"], o["metadata"]["name"]
            );
        }
    }
    let svc = one(objects, "Service", "istio-eastwestgateway");
    let labels = &svc["metadata"]["labels"];
    assert_eq!(labels["istio"], "eastwestgateway", "{name}");
    assert_eq!(labels["app"], "istio-eastwestgateway", "{name}");
    let network = labels["topology.istio.io/network"]
        .as_str()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| panic!("{name}: the Service's topology.istio.io/network"));
    let ports: BTreeSet<(String, u64, u64)> = svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert_eq!(p["protocol"], "TCP");
            (
                p["name"].as_str().unwrap().to_string(),
                p["port"].as_u64().unwrap(),
                p["targetPort"].as_u64().unwrap(),
            )
        })
        .collect();
    let want: BTreeSet<_> = [
        ("status-port", 15021),
        ("tls", 15443),
        ("tls-istiod", 15012),
        ("tls-webhook", 15017),
    ]
    .into_iter()
    .map(|(n, p)| (n.to_string(), p, p))
    .collect();
    assert_eq!(ports, want, "{name}: Service ports");

    let deploy = one(objects, "Deployment", "eastwest");
    let pod = &deploy["spec"]["template"];
    let pod_labels = &pod["metadata"]["labels"];
    for (k, v) in svc["spec"]["selector"].as_object().unwrap() {
        assert_eq!(
            &pod_labels[k], v,
            "{name}: the Service must select the pods"
        );
    }
    assert_eq!(
        pod_labels["topology.istio.io/network"], network,
        "{name}: cluster.yaml must give the Service and the pods one network"
    );
    assert!(
        pod_labels["topology.istio.io/cluster"]
            .as_str()
            .is_some_and(|c| !c.is_empty()),
        "{name}: the pods' topology.istio.io/cluster"
    );
    for (k, v) in deploy["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(
            &pod_labels[k], v,
            "{name}: the Deployment must select its pods"
        );
    }
    assert_eq!(
        pod["metadata"]["annotations"]["sidecar.istio.io/inject"], "false",
        "{name}: a sidecar in the gateway pod would intercept its traffic"
    );
    let spec = &pod["spec"];
    assert_eq!(
        spec["serviceAccountName"],
        "istio-eastwestgateway-service-account"
    );
    assert_eq!(spec["securityContext"]["runAsNonRoot"], true, "{name}");
    assert!(
        spec["securityContext"].get("runAsUser").is_none(),
        "{name}: a fixed runAsUser is refused by OpenShift's restricted-v2 SCC"
    );
    assert!(spec["terminationGracePeriodSeconds"].as_u64().unwrap() > 20);
    let containers = spec["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1, "{name}");
    let c = &containers[0];
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}");
    assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}");
    assert_eq!(
        strs(&sc["capabilities"]["drop"]),
        ["ALL".to_string()].into()
    );
    assert!(sc["capabilities"].get("add").is_none(), "{name}");
    let probe = &c["readinessProbe"]["httpGet"];
    assert_eq!(probe["path"], "/healthz/ready", "{name}");
    assert_eq!(probe["port"], 15021, "{name}");
    assert!(
        c["livenessProbe"].get("httpGet").is_none(),
        "{name}: liveness must not be readiness, or a lost API server restarts the gateway"
    );
    for r in ["cpu", "memory"] {
        assert!(
            c["resources"]["requests"].get(r).is_some(),
            "{name}: requests.{r}"
        );
    }
    assert!(c["resources"]["limits"].get("memory").is_some(), "{name}");
    let env: Vec<(&str, &Value)> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e))
        .collect();
    // The process's identity is the pods' labels, so it cannot disagree with them.
    let from_label = |var: &str, label: &str| {
        let e = env
            .iter()
            .find(|(n, _)| *n == var)
            .unwrap_or_else(|| panic!("{name}: env {var}"))
            .1;
        assert_eq!(
            e["valueFrom"]["fieldRef"]["fieldPath"],
            format!("metadata.labels['{label}']"),
            "{name}: {var}"
        );
    };
    from_label("EASTWEST_CLUSTER_ID", "topology.istio.io/cluster");
    from_label("EASTWEST_NETWORK", "topology.istio.io/network");
    assert!(env.iter().any(|(n, e)| *n == "POD_NAMESPACE"
        && e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"));

    // The config the args name is the file the generated ConfigMap holds: the shipped one, which
    // control's config tests load and check.
    let args = strs(&c["args"]);
    assert!(args.contains("--kube"), "{name}: {args:?}");
    let config = generated(objects, "ConfigMap", "eastwest-config");
    let mount = named(&c["volumeMounts"], "config");
    let volume = named(&spec["volumes"], "config");
    assert_eq!(volume["configMap"]["name"], config["metadata"]["name"]);
    let file = config["data"]["istio-eastwestgateway.yaml"]
        .as_str()
        .unwrap();
    assert!(args.contains(&format!(
        "{}/istio-eastwestgateway.yaml",
        mount["mountPath"].as_str().unwrap()
    )));
    assert_eq!(
        file,
        std::fs::read_to_string(repo().join("deploy/base/istio-eastwestgateway.yaml")).unwrap()
    );
    let container_ports: BTreeSet<u64> = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["containerPort"].as_u64().unwrap())
        .collect();
    for (_, _, target) in &ports {
        assert!(
            container_ports.contains(target),
            "{name}: containerPort {target}"
        );
    }

    let pdb = one(objects, "PodDisruptionBudget", "eastwest");
    assert_eq!(pdb["spec"]["minAvailable"], 1, "{name}");
    for (k, v) in pdb["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&pod_labels[k], v, "{name}: the PDB must select the pods");
    }

    // RBAC: read-only, and bound to the pods' service account.
    let role = one(objects, "ClusterRole", "eastwest");
    for rule in role["rules"].as_array().unwrap() {
        assert_eq!(
            strs(&rule["verbs"]),
            ["get", "list", "watch"].map(String::from).into(),
            "{name}: the gateway only reads"
        );
    }
    let binding = one(objects, "ClusterRoleBinding", "eastwest");
    assert_eq!(binding["roleRef"]["name"], "eastwest");
    assert_eq!(binding["subjects"][0]["kind"], "ServiceAccount");
    assert_eq!(binding["subjects"][0]["name"], spec["serviceAccountName"]);
    assert_eq!(binding["subjects"][0]["namespace"], "istio-system");
    one(
        objects,
        "ServiceAccount",
        "istio-eastwestgateway-service-account",
    );

    // The Gateway istiod reads.
    let gw = one(objects, "Gateway", "cross-network-gateway");
    assert_eq!(gw["spec"]["selector"]["istio"], "eastwestgateway");
    let server = &gw["spec"]["servers"][0];
    assert_eq!(server["port"]["number"], 15443);
    assert_eq!(server["tls"]["mode"], "AUTO_PASSTHROUGH");
    assert_eq!(strs(&server["hosts"]), ["*.local".to_string()].into());
}

#[test]
fn every_overlay_renders_with_what_istio_and_the_other_clusters_rely_on() {
    for name in OVERLAYS {
        assert_common(name, &overlay(name));
    }
}

#[test]
fn loadbalancer_overlay_is_the_cloud_drop_in() {
    let o = overlay("loadbalancer");
    let svc = one(&o, "Service", "istio-eastwestgateway");
    assert_eq!(svc["spec"]["type"], "LoadBalancer");
    let hpa = one(&o, "HorizontalPodAutoscaler", "eastwest");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "eastwest");
    assert!(hpa["spec"]["minReplicas"].as_u64().unwrap() >= 2);
    let deploy = one(&o, "Deployment", "eastwest");
    assert_eq!(
        deploy["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"],
        0
    );
    assert!(
        deploy["spec"]["template"]["spec"]
            .get("hostNetwork")
            .is_none()
    );
}

#[test]
fn nodeport_overlay_serves_tls_on_30443_as_in_the_seed_lab() {
    let o = overlay("nodeport");
    let svc = one(&o, "Service", "istio-eastwestgateway");
    assert_eq!(svc["spec"]["type"], "NodePort");
    let node_ports: Vec<(&str, u64)> = svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| Some((p["name"].as_str()?, p["nodePort"].as_u64()?)))
        .collect();
    assert_eq!(node_ports, [("tls", 30443)]);
}

#[test]
fn hostnetwork_overlay_binds_the_nodes_ports_one_pod_per_node() {
    let o = overlay("hostnetwork");
    let deploy = one(&o, "Deployment", "eastwest");
    let spec = &deploy["spec"]["template"]["spec"];
    assert_eq!(spec["hostNetwork"], true);
    assert_eq!(
        spec["dnsPolicy"], "ClusterFirstWithHostNet",
        "without it a hostNetwork pod cannot resolve istiod.istio-system.svc"
    );
    let required =
        &spec["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"];
    assert_eq!(required[0]["topologyKey"], "kubernetes.io/hostname");
    assert_eq!(
        deploy["spec"]["strategy"]["rollingUpdate"]["maxSurge"], 0,
        "a surge pod would find its node's ports taken"
    );
    assert!(
        o.iter().all(|x| x["kind"] != "HorizontalPodAutoscaler"),
        "replicas are the gateway nodes, not an autoscaler's"
    );
    let svc = one(&o, "Service", "istio-eastwestgateway");
    assert!(svc["spec"].get("type").is_none_or(|t| t == "ClusterIP"));
}

/// The image: both stages pinned, the build is deploy/build.sh (what CI builds and demos), the
/// run stage has no shell and a numeric user, the entrypoint needs none.
#[test]
fn dockerfile_is_pinned_multi_stage_non_root_and_builds_what_ci_builds() {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let froms: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with("FROM "))
        .copied()
        .collect();
    assert_eq!(froms.len(), 2, "a build and a run stage: {froms:?}");
    let build_image = froms[0].split_whitespace().nth(1).unwrap();
    let (_, tag) = build_image.rsplit_once(':').unwrap();
    let version = tag.split('-').next().unwrap();
    assert_eq!(
        version
            .split('.')
            .filter(|p| p.parse::<u32>().is_ok())
            .count(),
        3,
        "the toolchain pinned to a patch release: {build_image}"
    );
    let run_image = froms[1].split_whitespace().nth(1).unwrap();
    assert!(
        run_image.starts_with("gcr.io/distroless/") && !run_image.contains(":debug"),
        "a run image without a shell: {run_image}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("RUN ") && l.contains("deploy/build.sh"))
    );
    let run_stage = &lines[lines.iter().position(|l| *l == froms[1]).unwrap()..];
    assert!(
        run_stage.iter().all(|l| !l.starts_with("RUN ")),
        "no RUN: no shell there"
    );
    let user = run_stage
        .iter()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER in the run stage");
    assert!(
        user.split(':')
            .all(|p| p.parse::<u32>().is_ok_and(|id| id != 0)),
        "numeric, not root: {user}"
    );
    let entry = run_stage
        .iter()
        .find_map(|l| l.strip_prefix("ENTRYPOINT "))
        .unwrap();
    assert!(entry.starts_with('['), "exec form, no shell: {entry}");
    let build = std::fs::read_to_string(repo().join("deploy/build.sh")).unwrap();
    assert!(build.contains("cargo build --release --locked"), "{build}");
}

/// The host mode's files: the systemd unit runs the config it documents, as an unprivileged user,
/// with a stop timeout past the drain; `systemd-analyze verify` accepts it where systemd is.
#[test]
fn host_mode_unit_and_config() {
    let unit = std::fs::read_to_string(repo().join("deploy/host/eastwest.service")).unwrap();
    let field = |k: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("{k}= in the unit"))
    };
    assert_eq!(
        field("ExecStart"),
        "/usr/local/bin/eastwest run --config /etc/eastwest/clusters.yaml"
    );
    assert_eq!(field("User"), "eastwest");
    assert_eq!(field("NoNewPrivileges"), "yes");
    assert_eq!(field("CapabilityBoundingSet"), "");
    assert!(field("TimeoutStopSec").parse::<u32>().unwrap() > 20);
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok()
    {
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(repo().join("deploy/host/eastwest.service"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        // The only complaint allowed is the binary not being installed on this machine.
        for line in err.lines() {
            assert!(
                line.contains("/usr/local/bin/eastwest"),
                "systemd-analyze: {line}"
            );
        }
    }
}
