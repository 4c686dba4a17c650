//! A cluster's stores → one complete route table: for every Service port, the ready addresses
//! of every slice of that Service, on the slice port with the Service port's name.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;

use eastwest_proxy::routes::{RouteTable, RouteTableBuilder};

use super::model::{Object, SliceInfo};
use super::store::Store;
use crate::services::{ServiceSpec, add_specs};

/// Sizes of what a table was built from, for logs and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub services: usize,
    pub slices: usize,
}

/// Builds the table from every store (Services and EndpointSlices of every watched namespace)
/// and the static services; endpoints already in `previous` keep their health and load.
pub fn build(
    stores: &[&Store],
    cluster_domain: &str,
    statics: &[ServiceSpec],
    previous: Option<&RouteTable>,
) -> (RouteTable, Counts) {
    let mut counts = Counts::default();
    let mut slices: HashMap<(&str, &str), Vec<&SliceInfo>> = HashMap::new();
    for store in stores {
        for ((namespace, _), object) in store.objects() {
            if let Object::Slice(slice) = object {
                counts.slices += 1;
                slices
                    .entry((namespace, &slice.service))
                    .or_default()
                    .push(slice);
            }
        }
    }
    let mut builder = RouteTableBuilder::new();
    let mut host = String::new();
    for store in stores {
        for ((namespace, name), object) in store.objects() {
            let Object::Service(service) = object else {
                continue;
            };
            counts.services += 1;
            host.clear();
            let _ = write!(host, "{name}.{namespace}.svc.{cluster_domain}");
            let of_service = slices
                .get(&(&**namespace, &**name))
                .map_or(&[][..], Vec::as_slice);
            for port in service.ports.iter() {
                let endpoints = of_service.iter().flat_map(|slice| {
                    let target = slice.ports.iter().find(|p| p.name == port.name);
                    target
                        .into_iter()
                        .flat_map(|t| slice.ready.iter().map(|ip| SocketAddr::new(*ip, t.port)))
                });
                builder.add(&host, port.port, "", endpoints);
            }
        }
    }
    add_specs(&mut builder, statics);
    (builder.build(previous), counts)
}

#[cfg(test)]
mod tests;
