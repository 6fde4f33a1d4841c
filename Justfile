# Recipes for building, testing, serving and benchmarking the server variants.
# `just --list` shows them with their descriptions.

set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes.
default:
    @just --list

# Build every server variant (release, with line tables for perf).
build:
    cargo build --release -p servers --bins

# Run the whole test suite (unit, parser fuzz, conformance against all variants).
test:
    cargo test --workspace

# Start one variant on 127.0.0.1:8080 (extra flags pass through, e.g. `just serve epoll --port 9000`).
serve VARIANT *FLAGS: build
    @cargo build --release -q -p harness --bin harness
    @./target/release/harness variants --check {{VARIANT}}
    ./target/release/{{VARIANT}} {{FLAGS}}

# The variant catalog (servers/src/variants.rs): name and model, one per line.
variants:
    cargo build --release -q -p harness --bin harness
    ./target/release/harness variants

# Two builds of one variant side by side (old from DIR, new from this tree) with nginx; flags pass through (`harness compare --help`).
compare OLD_BIN_DIR VARIANT *FLAGS:
    cargo build --release -p servers -p harness --bins
    ./target/release/harness compare --old-bin-dir {{OLD_BIN_DIR}} --variant {{VARIANT}} {{FLAGS}}

# wrk against each variant and nginx, side by side (server on CPU 0, wrk -t1 on CPU 1); see scripts/bench-vs-nginx --help.
bench-vs-nginx *ARGS:
    scripts/bench-vs-nginx {{ARGS}}

# loadgen, wrk and oha (when installed) against one nginx (1 worker on CPU 0, each client with 1 thread on CPU 1), alternating runs; flags pass through (`harness clients --help`).
clients *ARGS:
    cargo build --release -p harness --bins
    ./target/release/harness clients {{ARGS}}

# cargo fmt --check and clippy with warnings denied.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Full bench sweep into results/: every variant and nginx, 50-1200 connections, 3 trials of 5 s (~9 min on 2 cores); flags pass through (`harness bench --help`).
bench-all *FLAGS:
    cargo build --release -p servers -p harness --bins
    ./target/release/harness bench {{FLAGS}}

# Sweep one server (a variant, nginx, or a comma list) into target/bench/VARIANT/ (results/ keeps the reference run); flags pass through.
bench VARIANT *FLAGS:
    cargo build --release -p servers -p harness --bins
    ./target/release/harness bench --variants {{VARIANT}} --out target/bench/{{VARIANT}} {{FLAGS}}

# Smoke check (< 1 min): every variant and nginx, 1 trial of 1.5 s at 50 and 400 connections, into target/bench-quick/.
bench-quick *FLAGS:
    cargo build --release -p servers -p harness --bins
    ./target/release/harness bench --quick --out target/bench-quick {{FLAGS}}

# Soak one variant under well-behaved and hostile clients (10 minutes unless `--duration 60s`), then check RSS, descriptors, child processes, /stats, statuses and a clean exit; flags pass through (`harness soak --help`).
soak VARIANT *FLAGS: build
    cargo build --release -q -p harness --bin harness
    ./target/release/harness soak --variant {{VARIANT}} {{FLAGS}}

# Build the servers with frame pointers into target/frame-pointers/release, where `harness profile` looks for them: perf's -g (frame-pointer unwinding) then sees whole user stacks.
build-profiling:
    RUSTFLAGS="-C force-frame-pointers=yes" cargo build --release --target-dir target/frame-pointers -p servers --bins

# Profile one server (a variant or nginx) under load into profiles/VARIANT/ (~25 s): perf record -e cpu-clock -g, CPU µs per request per bucket, syscalls per request, off-CPU time; flags pass through (`harness profile --help`).
profile VARIANT *FLAGS: build-profiling
    cargo build --release -p harness --bins
    ./target/release/harness profile --variant {{VARIANT}} {{FLAGS}}

# Profile every variant and nginx under the same load (~3.5 min): profiles/ (flame graphs, off-CPU graphs), profiles/buckets.csv, results/cost-per-request.png (CPU µs per request per bucket), results/bottleneck-migration.png and the profile section of results/summary.md.
profile-all *FLAGS: build-profiling
    cargo build --release -p harness --bins
    ./target/release/harness profile --all {{FLAGS}}

# Fuzz one target (coverage-guided, libFuzzer, stable toolchain: no sanitizer) for TIME seconds (default 60); `just fuzz-list` names them. Crashes land in fuzz/artifacts/TARGET/, new inputs in fuzz/corpus/TARGET/.
fuzz TARGET *TIME:
    command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
    cd fuzz && cargo fuzz run -s none {{TARGET}} -- -max_total_time={{ if TIME == "" { "60" } else { TIME } }} -print_final_stats=1

# The fuzz targets (fuzz/fuzz_targets/).
fuzz-list:
    command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
    cd fuzz && cargo fuzz list

# Merge loadgen --json results of several processes or machines that drove one server at once: counts summed, histograms added (`harness merge --help`).
merge *ARGS:
    @cargo build --release -q -p harness --bin harness
    ./target/release/harness merge {{ARGS}}
