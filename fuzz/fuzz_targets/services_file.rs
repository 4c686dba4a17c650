//! The services file parser (also the config file's `services:`) on arbitrary text: it may not
//! panic, every refusal names the file, and what it accepts builds a route table.
#![no_main]

use std::path::Path;

use eastwest_control::{build_table, parse_services};
use libfuzzer_sys::fuzz_target;

const ORIGIN: &str = "/etc/eastwest/services.yaml";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_services(text, Path::new(ORIGIN)) {
        Ok(services) => {
            let table = build_table(&services, None);
            assert!(table.route_count() <= services.len());
        }
        Err(error) => {
            let said = error.to_string();
            assert!(said.starts_with(ORIGIN), "an error that does not name the file: {said}");
        }
    }
});
