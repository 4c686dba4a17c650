//! The state every connection and the test-facing [`ApiServer`](crate::ApiServer) share.

use arc_swap::ArcSwap;
use tokio::sync::{Mutex, broadcast};

use crate::controls::Controls;
use crate::log::RequestLog;
use crate::registry::Registry;
use crate::store::{Signal, Store};

pub(crate) struct Shared {
    /// One async lock: requests hold it only while reading a snapshot or opening a watch.
    pub(crate) store: Mutex<Store>,
    /// The store's broadcast, kept here too so `drop_watches` needs no lock.
    pub(crate) signals: broadcast::Sender<Signal>,
    pub(crate) registry: ArcSwap<Registry>,
    pub(crate) controls: Controls,
    pub(crate) log: RequestLog,
    pub(crate) git_version: String,
    /// `127.0.0.1:port`, for `/api`'s `serverAddressByClientCIDRs`.
    pub(crate) address: String,
}
