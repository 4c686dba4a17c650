//! Reaching the API server: a kubeconfig file (and context), or what kube-rs infers
//! (`$KUBECONFIG`, `~/.kube/config`, then the pod's service account).
//!
//! Credentials are kube-rs's: tokens, client certificates and exec plugins from kubeconfigs;
//! in a pod, the projected service-account token, which kube-rs re-reads from its file about
//! every minute, so kubelet's rotation of it is picked up without a restart.
//!
//! Every response is held to a read timeout ([`response_timeout`]): an API server that takes
//! a list or a watch and then says nothing is given up on and retried, instead of leaving the
//! routes stale for good.

use std::path::PathBuf;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// Where the cluster's credentials come from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Connection {
    /// A kubeconfig file; `None` lets kube-rs infer (`$KUBECONFIG`, `~/.kube/config`, then
    /// in-cluster).
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context; `None` is the file's `current-context`.
    pub context: Option<String>,
}

/// Why the client could not be made. Each names its input.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("kubeconfig {}: {source}", path.display())]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error(
        "no Kubernetes credentials: {source} (pass --kubeconfig FILE, set $KUBECONFIG, or run \
         in a pod with a service account)"
    )]
    Infer {
        #[source]
        source: kube::config::InferConfigError,
    },
    #[error("kubeconfig context {context:?}: {source}")]
    Context {
        context: String,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("cannot build a Kubernetes client: {source}")]
    Client {
        #[source]
        source: kube::Error,
    },
}

impl Connection {
    /// Builds the client; no request is made yet (the watchers make the first). `watch_timeout`
    /// is [`KubeOptions::watch_timeout`](super::KubeOptions::watch_timeout); responses are held
    /// to [`response_timeout`] of it.
    pub async fn client(&self, watch_timeout: Duration) -> Result<(Client, String), ConnectError> {
        let options = KubeConfigOptions {
            context: self.context.clone(),
            ..KubeConfigOptions::default()
        };
        let config = match (&self.kubeconfig, &self.context) {
            (Some(path), _) => {
                let file =
                    Kubeconfig::read_from(path).map_err(|source| ConnectError::Kubeconfig {
                        path: path.clone(),
                        source,
                    })?;
                Config::from_custom_kubeconfig(file, &options)
                    .await
                    .map_err(|source| ConnectError::Kubeconfig {
                        path: path.clone(),
                        source,
                    })?
            }
            (None, Some(context)) => {
                Config::from_kubeconfig(&options)
                    .await
                    .map_err(|source| ConnectError::Context {
                        context: context.clone(),
                        source,
                    })?
            }
            (None, None) => Config::infer()
                .await
                .map_err(|source| ConnectError::Infer { source })?,
        };
        let mut config = config;
        config.read_timeout = Some(response_timeout(watch_timeout));
        // The timeout counts from the request, not from when its pooled connection went idle.
        config.reset_reader_on_write = true;
        let url = config.cluster_url.to_string();
        let client = Client::try_from(config).map_err(|source| ConnectError::Client { source })?;
        Ok((client, url))
    }
}

/// How long a response (a list page, a watch's next bytes) may stay silent before its request
/// is abandoned. Longer than the watch timeout (a healthy watch is ended by the server then) and
/// than kube-rs's watch idle limit (the watch timeout + 5 s, past which it re-opens a silent
/// watch), so it only catches what those do not: a list or a watch start that never answers.
pub fn response_timeout(watch_timeout: Duration) -> Duration {
    watch_timeout + Duration::from_secs(10)
}
