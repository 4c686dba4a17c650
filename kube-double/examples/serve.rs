//! Serves the fixture mesh until Ctrl-C, for poking at the double by hand:
//!
//! ```text
//! cargo run -p eastwest-kube-double --example serve -- /tmp/kubeconfig
//! KUBECONFIG=/tmp/kubeconfig kubectl get svc,endpointslices -A
//! ```

use eastwest_kube_double::{ApiServer, ApiServerOptions, fixtures};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "kubeconfig".to_owned());
    let server = ApiServer::start(ApiServerOptions::default()).await?;
    server.apply_all(fixtures::mesh()).await?;
    server.write_kubeconfig(path.as_ref(), "kube-double")?;
    println!("serving {} ; KUBECONFIG={path}", server.url());
    tokio::signal::ctrl_c().await?;
    for r in server.requests() {
        println!("{} {} ?{} -> {}", r.method, r.path, r.query, r.status);
    }
    Ok(())
}
