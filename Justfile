# Recipes for contributors. Nothing here is needed to build or test: `cargo` does it all.

# The demonstration the README's first command runs.
demo:
    cargo run --release -- demo

# The README's test command, as CI runs it.
test:
    bash .ci/run

# Lints as the project keeps them: formatted, and clippy without warnings.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# The dependency audit CI runs: advisories, licenses, duplicates, sources (.ci/deny.toml).
deny:
    bash .ci/deny

# Test coverage per file (cargo-llvm-cov, installed with the llvm-tools component if missing);
# the figures go into BENCHMARKS.md.
coverage *args:
    bash .ci/coverage {{args}}

# Benchmarks; their figures go into BENCHMARKS.md.
bench:
    cargo bench -p hotswap-plugin-host --bench plugins
    cargo bench -p hotswap-store --bench store
    cargo bench -p hotswap-device-vm --bench device

# Fuzz the device VM (`metadata`, `boot`, `smp` or `mcuboot`) for a while; needs the nightly
# toolchain (CI runs the same properties as proptests in device-vm/tests/decode.rs).
fuzz target="metadata" seconds="60":
    cargo install cargo-fuzz --locked
    cd device-vm && cargo +nightly fuzz run {{target}} -- -max_total_time={{seconds}}

# The built-in plugins and test fixtures as components (the host's and tests' build scripts do
# this on every build; this only shows where they land).
plugins:
    cargo build -p hotswap-plugin-host -p hotswap-tests --tests
    find target/debug/build -name '*.component.wasm' -newer Cargo.toml

# Plan with one built-in strategy over a generated fleet: `just plan canary '{"seed": 3}'`.
plan strategy config="{}":
    cargo run --release -- plan --strategy {{strategy}} --config '{{config}}'

# Check a plugin component the way an upload is checked, and run it once.
check-plugin file config="{}":
    cargo run --release -- plugin check {{file}} --config '{{config}}'

# The scale benchmark with the server's traces on and off, side by side in the same run (the
# figures in BENCHMARKS.md, "Traces on and off").
bench-traces devices="100000" runs="2":
    cargo run --release -- scale --devices {{devices}} --tracing compare --runs {{runs}}

# The scale benchmark on SQLite, on PostgreSQL, and on three replicas on PostgreSQL, side by side
# (the local PostgreSQL server unless HOTSWAP_BENCH_POSTGRES names another).
bench-databases devices="100000" runs="1":
    cargo run --release -- scale --devices {{devices}} --database compare --runs {{runs}}
