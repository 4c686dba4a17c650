//! The file source: the services file, read at start and reloaded when it changes, each good
//! version published as a new route-table snapshot. A bad version is reported and the last
//! good table stays (static stability).
//!
//! Changes are found by polling the file's identity (device, inode, size, mtime) rather than
//! with inotify: a Kubernetes ConfigMap volume updates by swapping a `..data` symlink, which a
//! watch on the file itself never sees, while `stat` through the path does. An in-place rewrite
//! to the same size within one mtime tick would go unseen; writing a new file and renaming it
//! over the old one (as editors, `kubectl` and kubelet do) is always seen.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use eastwest_proxy::routes::Routes;
use tokio::time::MissedTickBehavior;
use tracing::debug;

use crate::error::ConfigError;
use crate::services::{ServiceSpec, build_table, parse_services};

/// What a reload did.
#[derive(Debug)]
pub enum ReloadEvent {
    /// A new table was published.
    Loaded {
        version: u64,
        routes: usize,
        endpoints: usize,
    },
    /// The file changed but could not be used; the previous table stays.
    Rejected(ConfigError),
}

/// The services file as a source of route tables. Create with [`FileSource::start`], then
/// drive [`FileSource::watch`].
#[derive(Debug)]
pub struct FileSource {
    path: PathBuf,
    static_services: Vec<ServiceSpec>,
    routes: Arc<Routes>,
    poll: Duration,
    /// The file state last acted on (published or rejected), so that each change is reported
    /// once.
    seen: Seen,
}

/// What `stat` said about the file. Two equal values mean "no change seen".
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    File {
        #[cfg(unix)]
        dev_ino: (u64, u64),
        len: u64,
        modified: Option<SystemTime>,
    },
    Missing(std::io::ErrorKind),
}

impl Seen {
    async fn of(path: &Path) -> Seen {
        match tokio::fs::metadata(path).await {
            Ok(meta) => Seen::from_metadata(&meta),
            Err(e) => Seen::Missing(e.kind()),
        }
    }

    fn from_metadata(meta: &std::fs::Metadata) -> Seen {
        #[cfg(unix)]
        use std::os::unix::fs::MetadataExt;
        Seen::File {
            #[cfg(unix)]
            dev_ino: (meta.dev(), meta.ino()),
            len: meta.len(),
            modified: meta.modified().ok(),
        }
    }
}

impl FileSource {
    /// Loads `path` now, merges `static_services` (from `--endpoints` and the config file's
    /// `services:`) into the table and publishes it to `routes`. An error means the gateway
    /// should refuse to start.
    pub fn start(
        path: PathBuf,
        static_services: Vec<ServiceSpec>,
        routes: Arc<Routes>,
        poll: Duration,
    ) -> Result<FileSource, ConfigError> {
        // stat before reading: a change in between is then seen by the first poll.
        let seen = match std::fs::metadata(&path) {
            Ok(meta) => Seen::from_metadata(&meta),
            Err(error) => return Err(ConfigError::Io { path, error }),
        };
        let text = std::fs::read_to_string(&path).map_err(|error| ConfigError::Io {
            path: path.clone(),
            error,
        })?;
        let source = FileSource {
            path,
            static_services,
            routes,
            poll,
            seen,
        };
        source.publish(&text)?;
        Ok(source)
    }

    /// The file being watched.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Polls the file every `poll` and publishes a new table on every valid change; a bad
    /// version is reported through `on_event` and the last good table stays. Logging and
    /// counting are `on_event`'s job (a rejection is the gateway's own problem: `warn!` it with
    /// the error, which names file, line and field).
    ///
    /// A change is read once the file has looked the same for two polls in a row, so a file
    /// caught half-written is not loaded; each change is reported once. Runs until the future
    /// is dropped.
    pub async fn watch(mut self, on_event: impl Fn(ReloadEvent) + Send + 'static) {
        let mut ticks = tokio::time::interval(self.poll);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut pending: Option<Seen> = None;
        loop {
            ticks.tick().await;
            let now = Seen::of(&self.path).await;
            if now == self.seen {
                pending = None;
                continue;
            }
            if pending.as_ref() != Some(&now) {
                pending = Some(now);
                continue;
            }
            pending = None;
            debug!(file = %self.path.display(), "services file changed; reloading");
            self.seen = now;
            let event = match tokio::fs::read_to_string(&self.path).await {
                Ok(text) => self.publish(&text).unwrap_or_else(ReloadEvent::Rejected),
                Err(error) => ReloadEvent::Rejected(ConfigError::Io {
                    path: self.path.clone(),
                    error,
                }),
            };
            on_event(event);
        }
    }

    /// Parses `text` and publishes it with the static services; never publishes on error.
    fn publish(&self, text: &str) -> Result<ReloadEvent, ConfigError> {
        let mut specs = parse_services(text, &self.path)?;
        specs.extend(self.static_services.iter().cloned());
        let table = build_table(&specs, self.routes.load_full().as_deref());
        let (routes, endpoints) = (table.route_count(), table.endpoint_count());
        let version = self.routes.publish(table);
        Ok(ReloadEvent::Loaded {
            version,
            routes,
            endpoints,
        })
    }
}

/// Publishes `specs` alone (no services file) and returns the table's version.
pub fn publish_static(specs: &[ServiceSpec], routes: &Routes) -> u64 {
    routes.publish(build_table(specs, routes.load_full().as_deref()))
}

#[cfg(test)]
mod tests;
