//! xtask: Filterkit's workflow as `cargo xtask <verb>`.
//!
//! It builds filters for wasm32-wasip1, validates them with wasmparser, packages and moves
//! Wasm OCI artifacts, writes the Kubernetes resources, and runs filters in a real Envoy.
//! It never links a Wasm runtime: modules run only in Envoy or through host-sim's `filter-sim`.
//! Start reading at [`Command`].
#![forbid(unsafe_code)]

mod bench;
mod build;
mod config_schema;
mod credentials;
mod diff;
mod envoy;
mod image;
mod login;
mod manifests;
mod new;
mod oci;
mod publish;
mod pull;
mod setup;
mod sim;
mod test;
mod transport;
mod util;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Build, test, package and deploy Proxy-Wasm filters"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what builds and tests need (Rust target, Envoy, registry, skopeo, oras); idempotent.
    Setup(setup::Args),
    /// Build filters for wasm32-wasip1 into target/filters/<name>.wasm and validate them.
    Build(build::Args),
    /// Write a filter's Wasm OCI image layout under target/oci/<name>/.
    Package(oci::PackageArgs),
    /// Copy an OCI image layout to a registry.
    Push(oci::PushArgs),
    /// Check credentials for a registry and store them as docker does (config.json or its helper).
    Login(login::LoginArgs),
    /// Remove a registry's credentials from docker's store.
    Logout(login::LogoutArgs),
    /// Fetch an artifact from a registry into a directory, verifying every digest.
    Pull(pull::PullArgs),
    /// Write the ASMFilterDeployment, EnvoyFilter and WasmPlugin for a filter.
    Manifests(manifests::Args),
    /// Build, package, write manifests and, given a registry, push: the whole pipeline.
    Publish(publish::Args),
    /// Run a filter in a real Envoy on 127.0.0.1.
    Run(envoy::RunArgs),
    /// Scaffold a new filter under filters/.
    New(new::Args),
    /// Run a scenario through host-sim's filter-sim, or against a real Envoy (`envoy`, `diff`).
    Sim(sim::Args),
    /// Measure sizes, host-sim speed and Envoy costs; writes results under target/bench/.
    Bench(bench::Args),
    /// Everything CI checks: setup, fmt, clippy, filter builds, every test.
    Test(test::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Setup(args) => setup::run(args),
        Command::Build(args) => build::run(args),
        Command::Package(args) => oci::package(args),
        Command::Push(args) => oci::push(args),
        Command::Pull(args) => pull::pull(args),
        Command::Login(args) => login::login(args),
        Command::Logout(args) => login::logout(args),
        Command::Manifests(args) => manifests::run(args),
        Command::Publish(args) => publish::run(args),
        Command::Run(args) => envoy::run(args),
        Command::New(args) => new::run(args),
        Command::Sim(args) => sim::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Test(args) => test::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
