//! The config file parser on arbitrary text: it may not panic, and every refusal names the file
//! it read (the sentence an operator is shown starts with the path), so a bad config is always
//! located. A config that parses parses the same way again.
#![no_main]

use std::path::Path;

use eastwest_control::Config;
use libfuzzer_sys::fuzz_target;

const ORIGIN: &str = "/etc/eastwest/fuzz.yaml";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(text, Path::new(ORIGIN)) {
        Ok(config) => assert_eq!(Config::parse(text, Path::new(ORIGIN)).ok(), Some(config)),
        Err(error) => {
            let said = error.to_string();
            assert!(said.starts_with(ORIGIN), "an error that does not name the file: {said}");
        }
    }
});
