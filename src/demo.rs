//! `eastwest demo`: a two-cluster mesh on loopback with nothing to install. A shared root CA
//! and one intermediate per cluster, mTLS backends (two replicas of `west.west:8080`, one of
//! `east.east:8080`), one gateway per cluster, then calls east→west and west→east with Istio
//! SNIs. It prints what matters and exits 0 only if every check held.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use eastwest::world::{Backend, Client, istio_sni};
use eastwest_certs::{Ca, istio_spiffe_id, server_config};
use eastwest_proxy::config::{ListenerConfig, ProxyConfig, Timeouts};
use eastwest_proxy::hosts::HostPatterns;
use eastwest_proxy::metrics::Metrics;
use eastwest_proxy::routes::{RouteTableBuilder, Routes};
use eastwest_proxy::server::Gateway;

use crate::cli::DemoArgs;
use crate::logging::{self, LogFormat};

const WEST: &str = "west.west.svc.cluster.local";
const EAST: &str = "east.east.svc.cluster.local";
const PORT: u16 = 8080;
/// A name outside the gateways' exposed hosts (`*.local`).
const UNEXPOSED: &str = "payments.prod.svc.example.com";
const CALLS: usize = 6;

pub fn main(args: DemoArgs) -> ExitCode {
    if args.verbose {
        logging::init(LogFormat::Text);
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("eastwest demo: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(demo()) {
        Ok(true) => {
            println!("\nall checks passed");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            println!("\nsome checks FAILED");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("eastwest demo: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Prints one check and remembers whether it held.
struct Checks(bool);

impl Checks {
    fn check(&mut self, ok: bool, what: impl std::fmt::Display) {
        println!("  [{}] {what}", if ok { "ok" } else { "FAIL" });
        self.0 &= ok;
    }
}

/// One cluster's gateway, in this process (the same code `eastwest run` starts).
struct ClusterGateway {
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    gateway: Gateway,
}

fn start_gateway(host: &str, replicas: &[&Backend]) -> Result<ClusterGateway> {
    let routes = Routes::new();
    let mut b = RouteTableBuilder::new();
    b.add(host, PORT, "", replicas.iter().map(|r| r.addr));
    routes.publish(b.build(None));
    let metrics = Arc::new(Metrics::new());
    let config = ProxyConfig {
        timeouts: Timeouts {
            connect: Duration::from_secs(2),
            ..Timeouts::default()
        },
        istio_mtls_only: true,
        ..ProxyConfig::new(vec![ListenerConfig {
            name: "tls".into(),
            listen: "127.0.0.1:0".parse()?,
            hosts: HostPatterns::default_local(),
            target_port: 443,
            forward_to: None,
            aliases: None,
        }])
    };
    let gateway = Gateway::start(config, vec![routes], &metrics).context("starting a gateway")?;
    let addr = gateway.local_addrs()[0];
    Ok(ClusterGateway {
        addr,
        metrics,
        gateway,
    })
}

/// Reads one series' value from the gateway's Prometheus text.
fn metric(m: &Metrics, series: &str) -> u64 {
    m.encode()
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

async fn demo() -> Result<bool> {
    let mut c = Checks(true);
    println!("eastwest demo: two clusters on loopback, one east-west gateway each\n");

    let root = Ca::new_root("eastwest-demo")?;
    let east_ca = root.intermediate("east")?;
    let west_ca = root.intermediate("west")?;
    println!(
        "  trust    one root CA; intermediates for clusters east and west (Istio plug-in CA layout)"
    );

    let west_id = istio_spiffe_id("cluster.local", "west", "west");
    let west_leaf = west_ca.workload(&west_id, &[WEST])?;
    let west_cfg = server_config(&west_leaf, west_leaf.root_store())?;
    let west0 = Backend::start("west-0", west_cfg.clone()).await?;
    let west1 = Backend::start("west-1", west_cfg).await?;
    let east_leaf = east_ca.workload(&istio_spiffe_id("cluster.local", "east", "east"), &[EAST])?;
    let east0 =
        Backend::start("east-0", server_config(&east_leaf, east_leaf.root_store())?).await?;

    let west_gw = start_gateway(WEST, &[&west0, &west1])?;
    let east_gw = start_gateway(EAST, &[&east0])?;
    println!(
        "  west     {WEST}:{PORT} = west-0 {}, west-1 {}; gateway {}",
        west0.addr, west1.addr, west_gw.addr
    );
    println!(
        "  east     {EAST}:{PORT} = east-0 {}; gateway {}",
        east0.addr, east_gw.addr
    );

    // Sidecars: each cluster's workload identity, issued by its own intermediate.
    let east_sleep = istio_spiffe_id("cluster.local", "east", "sleep");
    let west_sleep = istio_spiffe_id("cluster.local", "west", "sleep");
    let from_east =
        Client::new(&east_ca.workload(&east_sleep, &[])?, WEST).map_err(anyhow::Error::msg)?;
    let from_west =
        Client::new(&west_ca.workload(&west_sleep, &[])?, EAST).map_err(anyhow::Error::msg)?;

    let west_sni = istio_sni(WEST, PORT);
    println!(
        "\neast -> west   SNI {west_sni} via gateway {}",
        west_gw.addr
    );
    let (ok, replicas, callers) = calls(&from_east, west_gw.addr, &west_sni).await;
    c.check(ok == CALLS, format!("{ok}/{CALLS} mTLS calls succeeded"));
    c.check(
        callers.len() == 1 && callers.contains_key(&east_sleep),
        format!("the backend saw the client's own identity {east_sleep}: the gateway did not terminate TLS"),
    );
    c.check(
        replicas.contains_key("west-0") && replicas.contains_key("west-1"),
        format!("both replicas served: {}", counts(&replicas)),
    );

    let east_sni = istio_sni(EAST, PORT);
    println!(
        "\nwest -> east   SNI {east_sni} via gateway {}",
        east_gw.addr
    );
    let (ok, replicas, callers) = calls(&from_west, east_gw.addr, &east_sni).await;
    c.check(ok == CALLS, format!("{ok}/{CALLS} mTLS calls succeeded"));
    c.check(
        callers.len() == 1 && callers.contains_key(&west_sleep),
        format!("the backend saw the client's own identity {west_sleep}"),
    );
    c.check(
        replicas.contains_key("east-0"),
        format!("served by {}", counts(&replicas)),
    );

    println!("\nreplica west-1 stopped");
    west1.stop();
    let before = west1.served();
    let (ok, replicas, _) = calls(&from_east, west_gw.addr, &west_sni).await;
    let failures = metric(
        &west_gw.metrics,
        "eastwest_upstream_connect_failures_total{listener=\"tls\"}",
    );
    let ejections = metric(
        &west_gw.metrics,
        "eastwest_endpoint_ejections_total{listener=\"tls\"}",
    );
    c.check(
        ok == CALLS,
        format!("{ok}/{CALLS} calls succeeded, none failed"),
    );
    c.check(
        west1.served() == before && replicas.keys().all(|r| r == "west-0"),
        format!(
            "west-1 received no traffic: {}; the gateway retried its {failures} refused \
             connect(s) on west-0 and ejected it ({ejections} ejection)",
            counts(&replicas)
        ),
    );

    let bad_sni = istio_sni(UNEXPOSED, PORT);
    println!("\nname outside the exposed hosts (*.local)   SNI {bad_sni}");
    let refused = from_east.call(west_gw.addr, &bad_sni, b"").await.is_err();
    let reason = metric(
        &west_gw.metrics,
        "eastwest_connections_refused_total{listener=\"tls\",reason=\"host_not_exposed\"}",
    );
    c.check(
        refused && reason == 1,
        "refused by the gateway (reason host_not_exposed)",
    );

    west0.stop();
    east0.stop();
    west_gw
        .gateway
        .drain(Duration::from_secs(1), std::future::pending())
        .await;
    east_gw
        .gateway
        .drain(Duration::from_secs(1), std::future::pending())
        .await;
    Ok(c.0)
}

/// Makes [`CALLS`] calls; returns how many succeeded, replicas and callers seen (with counts).
async fn calls(
    client: &Client,
    gateway: SocketAddr,
    sni: &str,
) -> (usize, BTreeMap<String, usize>, BTreeMap<String, usize>) {
    let mut ok = 0;
    let mut replicas = BTreeMap::new();
    let mut callers = BTreeMap::new();
    for i in 0..CALLS {
        match client
            .call(gateway, sni, format!("ping {i}\n").as_bytes())
            .await
        {
            Ok(reply) => {
                ok += 1;
                *replicas.entry(reply.replica).or_default() += 1;
                *callers.entry(reply.caller).or_default() += 1;
            }
            Err(e) => println!("  call {i} failed: {e}"),
        }
    }
    (ok, replicas, callers)
}

fn counts(m: &BTreeMap<String, usize>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k} x{v}"))
        .collect::<Vec<_>>()
        .join(", ")
}
