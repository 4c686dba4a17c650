//! `eastwest clusters`: what a running gateway routes to, one row per endpoint, as
//! `istioctl proxy-config endpoints` prints an Envoy's. It reads the gateway's
//! `/debug/clusters` over plain HTTP on the admin port.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};

#[derive(Debug, Args)]
pub struct ClustersArgs {
    /// The gateway's admin address.
    #[arg(
        long,
        env = "EASTWEST_ADMIN",
        default_value = "127.0.0.1:15021",
        value_name = "ADDR"
    )]
    pub admin: SocketAddr,

    /// Only rows whose cluster contains this text (e.g. `west.west.svc`, `|v1|`).
    #[arg(long, value_name = "TEXT")]
    pub cluster: Option<String>,

    /// Table (as istioctl) or JSON.
    #[arg(long, short, value_enum, default_value = "table")]
    pub output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

const TIMEOUT: Duration = Duration::from_secs(5);

pub fn main(args: ClustersArgs) -> ExitCode {
    match run(&args) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("eastwest clusters: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &ClustersArgs) -> Result<String> {
    let json = args.output == Output::Json;
    let path = if json {
        "/debug/clusters?format=json"
    } else {
        "/debug/clusters"
    };
    let body = get(args.admin, path)?;
    let Some(filter) = &args.cluster else {
        return Ok(body);
    };
    if json {
        let rows: Vec<serde_json::Value> =
            serde_json::from_str(&body).context("the gateway's JSON")?;
        let kept: Vec<_> = rows
            .into_iter()
            .filter(|r| {
                r["cluster"]
                    .as_str()
                    .is_some_and(|c| c.contains(filter.as_str()))
            })
            .collect();
        return Ok(format!("{}\n", serde_json::Value::Array(kept)));
    }
    let mut lines = body.lines();
    let mut out = lines.next().map(|h| format!("{h}\n")).unwrap_or_default();
    for line in lines.filter(|l| {
        l.rsplit(' ')
            .next()
            .is_some_and(|cluster| cluster.contains(filter.as_str()))
    }) {
        out.push_str(line);
        out.push('\n');
    }
    Ok(out)
}

/// One GET over HTTP/1.1 with `Connection: close`; the body if the status is 200.
fn get(addr: SocketAddr, path: &str) -> Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)
        .with_context(|| format!("cannot reach the admin port {addr} (is the gateway running?)"))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .with_context(|| format!("reading the answer from {addr}"))?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .with_context(|| format!("{addr} did not answer HTTP"))?;
    let status = head.split(' ').nth(1).unwrap_or("");
    if status != "200" {
        bail!(
            "{addr}{path} answered {}",
            head.lines().next().unwrap_or(head)
        );
    }
    Ok(body.to_string())
}
