#!/bin/sh
# The release build: the Dockerfile runs this, and CI runs it and then the demo with the binary it
# made, so the image holds what CI ran. Locked dependencies; the release profile of Cargo.toml.
set -eu
cargo build --release --locked --bin eastwest
