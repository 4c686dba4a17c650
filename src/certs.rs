//! `eastwest certs`: the mesh's certificates as files, replacing Istio's
//! `Makefile.selfsigned.mk`. `root` makes the shared root, `intermediate` a cluster's plug-in CA
//! (the four files of the `cacerts` secret istiod reads, optionally as a Secret manifest),
//! `workload` a SPIFFE certificate for one service account. The certificates themselves come from
//! the `eastwest-certs` library, the same code the demo and the tests build their worlds with.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use eastwest_certs::files::{self, OutFile, Overwrite};
use eastwest_certs::{Ca, CertOptions, KeyType, PluginFiles, Validity};

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Make the mesh's root CA: ROOT/root-cert.pem and ROOT/root-key.pem (0600).
    Root(RootArgs),
    /// Make a cluster's intermediate CA from the root: the four files of Istio's `cacerts`
    /// secret (ca-cert.pem, ca-key.pem, cert-chain.pem, root-cert.pem).
    Intermediate(IntermediateArgs),
    /// Make a workload certificate with a SPIFFE ID: cert.pem, key.pem, cert-chain.pem (leaf
    /// then intermediate) and root-cert.pem, the layout Istio's file-mounted certificates use.
    Workload(WorkloadArgs),
}

/// What every subcommand shares: where the files go, the key type, the lifetime, overwriting.
#[derive(Debug, Args)]
pub struct Common {
    /// Key algorithm of the new key. Istio's own CA uses RSA; ECDSA P-256 is smaller and faster
    /// and every Istio component accepts it.
    #[arg(long, value_name = "TYPE", default_value = "ecdsa-p256", value_parser = key_type)]
    pub key_type: KeyType,
    /// Lifetime in days (default: 3650 for a root, 730 for an intermediate, 1 for a workload,
    /// as Istio's Makefile and istiod). Capped at the issuer's own expiry.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub days: Option<u32>,
    /// Replace files that already exist. Without it, nothing is written if any target exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct RootArgs {
    /// Directory to write into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Organisation (`O`) of the root, inherited by every intermediate.
    #[arg(long, value_name = "NAME", default_value = "Istio")]
    pub org: String,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct IntermediateArgs {
    /// Directory of the root (root-cert.pem and root-key.pem, from `eastwest certs root`).
    #[arg(long, value_name = "DIR")]
    pub root: PathBuf,
    /// Cluster name; goes into the subject (`L=`) so each cluster's CA is distinct.
    #[arg(long, value_name = "NAME")]
    pub cluster: String,
    /// Directory to write into [default: ROOT/CLUSTER, as Istio's Makefile lays it out].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Also write cacerts.yaml: the `cacerts` Secret as a manifest for `kubectl apply -f`.
    #[arg(long)]
    pub secret_yaml: bool,
    /// Namespace of the Secret in cacerts.yaml: the one istiod runs in.
    #[arg(long, value_name = "NS", default_value = PluginFiles::DEFAULT_NAMESPACE)]
    pub secret_namespace: String,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct WorkloadArgs {
    /// Directory of the issuing CA: a cluster's intermediate (cert-chain.pem and ca-key.pem) or
    /// a root (root-cert.pem and root-key.pem).
    #[arg(long, value_name = "DIR")]
    pub ca: PathBuf,
    /// SPIFFE ID for the URI SAN: spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>.
    #[arg(long, value_name = "ID")]
    pub spiffe: String,
    /// Also a DNS SAN (repeatable).
    #[arg(long, value_name = "NAME")]
    pub dns: Vec<String>,
    /// Directory to write into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    #[command(flatten)]
    pub common: Common,
}

fn key_type(s: &str) -> Result<KeyType, String> {
    s.parse()
}

/// Output file names of `certs workload`.
const WORKLOAD_CERT: &str = "cert.pem";
const WORKLOAD_KEY: &str = "key.pem";
const WORKLOAD_CHAIN: &str = "cert-chain.pem";
const SECRET_YAML: &str = "cacerts.yaml";

pub fn main(command: CertsCommand) -> ExitCode {
    let result = match command {
        CertsCommand::Root(args) => root(args),
        CertsCommand::Intermediate(args) => intermediate(args),
        CertsCommand::Workload(args) => workload(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", reasons(&e));
            if e.chain().any(|c| {
                matches!(
                    c.downcast_ref::<files::FileError>(),
                    Some(files::FileError::Exists { .. })
                )
            }) {
                eprintln!("hint: pass --force to replace existing files");
            }
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each said once: a cause whose text its parent already quotes (our
/// file errors say the OS reason inline) is not repeated.
fn reasons(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let cause = cause.to_string();
        if text.contains(&cause) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause);
    }
    text
}

/// A cluster name becomes a directory under the root (`--out` defaults to ROOT/CLUSTER) and the
/// intermediate's `L=`; refuse anything that could name another place on disk.
fn check_cluster(name: &str) -> Result<()> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || name.len() > 63 || name.starts_with('.') || !name.chars().all(allowed) {
        anyhow::bail!(
            "--cluster {name:?}: use 1 to 63 letters, digits, '-', '_' or '.', not starting \
             with '.' (it names the cluster's directory under the root)"
        );
    }
    Ok(())
}

impl Common {
    fn options(&self, default: CertOptions) -> CertOptions {
        let options = default.with_key_type(self.key_type);
        match self.days {
            Some(days) => options.with_validity(Validity::days(days)),
            None => options,
        }
    }

    fn overwrite(&self) -> Overwrite {
        if self.force {
            Overwrite::Replace
        } else {
            Overwrite::Never
        }
    }
}

fn root(args: RootArgs) -> Result<()> {
    let ca = Ca::new_root_with(&args.org, args.common.options(CertOptions::ROOT))?;
    let key = ca.key_pem();
    let written = files::write_files(
        &args.out,
        &[
            public(files::ROOT_CERT, ca.cert_pem()),
            secret(files::ROOT_KEY, &key),
        ],
        args.common.overwrite(),
    )?;
    describe(&ca, args.common.key_type);
    report(&written);
    Ok(())
}

fn intermediate(args: IntermediateArgs) -> Result<()> {
    // Check the arguments before generating anything, so a typo costs no RSA key generation.
    check_cluster(&args.cluster)?;
    let namespace = &args.secret_namespace;
    PluginFiles::check_namespace(namespace).context("--secret-namespace")?;

    let root = files::read_root(&args.root)?;
    let ca = root.intermediate_with(
        &args.cluster,
        args.common.options(CertOptions::INTERMEDIATE),
    )?;
    let plugin = ca.plugin_files();
    let yaml = if args.secret_yaml {
        Some(plugin.secret_yaml(namespace)?)
    } else {
        None
    };
    let mut out: Vec<OutFile<'_>> = vec![
        public(PluginFiles::CA_CERT, &plugin.ca_cert),
        secret(PluginFiles::CA_KEY, &plugin.ca_key),
        public(PluginFiles::CERT_CHAIN, &plugin.cert_chain),
        public(PluginFiles::ROOT_CERT, &plugin.root_cert),
    ];
    if let Some(yaml) = &yaml {
        // It carries the key.
        out.push(secret(SECRET_YAML, yaml));
    }
    let dir = args.out.unwrap_or_else(|| args.root.join(&args.cluster));
    let written = files::write_files(&dir, &out, args.common.overwrite())?;
    describe(&ca, args.common.key_type);
    report(&written);
    println!("\nGive it to istiod in cluster {}:", args.cluster);
    let from_files: Vec<String> = [
        PluginFiles::CA_CERT,
        PluginFiles::CA_KEY,
        PluginFiles::ROOT_CERT,
        PluginFiles::CERT_CHAIN,
    ]
    .iter()
    .map(|name| format!("      --from-file={}", dir.join(name).display()))
    .collect();
    println!(
        "  kubectl create namespace {namespace}\n  \
         kubectl create secret generic {} -n {namespace} \\\n{}",
        PluginFiles::SECRET_NAME,
        from_files.join(" \\\n")
    );
    if args.secret_yaml {
        println!(
            "or:\n  kubectl apply -f {}",
            dir.join(SECRET_YAML).display()
        );
    }
    Ok(())
}

fn workload(args: WorkloadArgs) -> Result<()> {
    let ca = files::read_ca(&args.ca)?;
    let dns: Vec<&str> = args.dns.iter().map(String::as_str).collect();
    let leaf = ca.workload_with(
        &args.spiffe,
        &dns,
        args.common.options(CertOptions::WORKLOAD),
    )?;
    let key = leaf.key_pem();
    let chain = leaf.chain_pem();
    let written = files::write_files(
        &args.out,
        &[
            public(WORKLOAD_CERT, leaf.cert_pem()),
            secret(WORKLOAD_KEY, &key),
            public(WORKLOAD_CHAIN, &chain),
            public(files::ROOT_CERT, leaf.root_cert_pem()),
        ],
        args.common.overwrite(),
    )?;
    println!(
        "workload certificate for {} ({}), issued by {}",
        leaf.spiffe_id(),
        args.common.key_type,
        ca.subject()
    );
    report(&written);
    Ok(())
}

fn public<'a>(name: &'a str, contents: &'a str) -> OutFile<'a> {
    OutFile {
        name,
        contents,
        secret: false,
    }
}

fn secret<'a>(name: &'a str, contents: &'a str) -> OutFile<'a> {
    OutFile {
        name,
        contents,
        secret: true,
    }
}

fn describe(ca: &Ca, key_type: KeyType) {
    let kind = if ca.is_root() {
        "root CA"
    } else {
        "intermediate CA"
    };
    println!(
        "{kind} {} ({key_type}), valid until {}",
        ca.subject(),
        ca.not_after().date()
    );
}

fn report(written: &[PathBuf]) {
    for path in written {
        println!("  wrote {}{}", path.display(), mode_note(path));
    }
}

fn mode_note(path: &Path) -> &'static str {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(path) {
        Ok(m) if m.permissions().mode() & 0o777 == files::SECRET_MODE => " (0600)",
        _ => "",
    }
}
