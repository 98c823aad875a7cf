//! `cargo xtask publish <FILTER>`: build, package, write the manifests, and push when given a
//! registry. Without `--registry` nothing needs a server: the image in the manifests then names
//! the local layout (`target/oci/<FILTER>:<tag>`) and the WasmPlugin and EnvoyExtensionPolicy
//! are templates. With it, the manifests come after the push, pinned by the digest the
//! registry serves.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::manifests::{self, DeployArgs};
use crate::oci::{self, RegistryArgs};
use crate::{build, sim, util};

#[derive(clap::Args)]
pub struct Args {
    /// The filter (directory under filters/).
    pub filter: String,
    /// Push to this reference, registry/repository[:tag] (e.g. 127.0.0.1:5000/asm/asm-test:v0.1).
    #[arg(long)]
    pub registry: Option<String>,
    /// Tag of the layout and, when --registry has none, of the pushed image.
    #[arg(long)]
    pub tag: Option<String>,
    /// The layout, as `package --format`: `oci` (two layers), `seed` (one wasm layer, which
    /// Istio's image fetcher rejects) or `compat` (Istio's compat image).
    #[arg(long, value_enum, default_value_t = oci::Format::Oci)]
    pub format: oci::Format,
    /// Same as `--format seed`.
    #[arg(long, conflicts_with = "format")]
    pub single_layer: bool,
    #[command(flatten)]
    pub deploy: DeployArgs,
    #[command(flatten)]
    pub registry_options: RegistryArgs,
    /// Ship cargo's output as is, without trying `wasm-opt -Oz`.
    #[arg(long)]
    pub no_wasm_opt: bool,
    /// Skip configuring the plugin in host-sim (`filter-sim check`) before packaging.
    #[arg(long)]
    pub no_check: bool,
    /// Print one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// The result, also the `--json` output.
#[derive(Serialize)]
pub struct Published {
    pub filter: String,
    pub wasm: PathBuf,
    pub wasm_size: u64,
    pub wasm_digest: String,
    pub manifest_digest: String,
    pub layout: PathBuf,
    pub image: String,
    pub pushed: bool,
    pub manifests: manifests::Written,
}

pub fn run(args: Args) -> Result<()> {
    let tag = manifests::resolve_tag(
        args.registry.as_deref(),
        args.tag.as_deref(),
        oci::DEFAULT_TAG,
    )?;
    // Check the deployment options before the slow build.
    args.deploy.check(&args.filter)?;

    let timer = util::Timer::start();
    eprintln!("[1/5] build {}", args.filter);
    let built = build::build(std::slice::from_ref(&args.filter), !args.no_wasm_opt)?;
    let built = built.into_iter().next().expect("one filter was built");
    eprintln!(
        "      {} ({} bytes, {})",
        built.wasm.display(),
        built.size,
        built.sha256
    );

    if args.no_check {
        eprintln!("[2/5] configuration check skipped (--no-check)");
    } else {
        eprintln!(
            "[2/5] configure root_id {} in host-sim, as Envoy would",
            args.deploy.root_id
        );
        sim::check_config(
            &built.wasm,
            &args.deploy.root_id,
            args.deploy.parameters.as_deref(),
        )?;
    }

    eprintln!("[3/5] package");
    let root_ids = vec![args.deploy.root_id.clone()];
    let packaged = oci::package_filter(
        &args.filter,
        &built.wasm,
        &root_ids,
        &tag,
        if args.single_layer {
            oci::Format::Seed
        } else {
            args.format
        },
    )?;
    let layout = oci::Layout::read(&packaged.layout, None)?;

    let image = match &args.registry {
        Some(registry) => manifests::registry_image(registry, &tag)?,
        None => packaged.image.clone(),
    };
    let (source, pushed) = match &args.registry {
        Some(_) => {
            eprintln!("[4/5] push {image}");
            let pushed = oci::push_layout(&layout, &image, &args.registry_options)?;
            eprintln!(
                "      uploaded {} blob(s), {} already there",
                pushed.uploaded, pushed.skipped
            );
            // Pin what the registry serves, not what was sent: pull it back. With --username
            // the password was read from stdin by the push and cannot be read again.
            let source = if args.registry_options.username.is_none() {
                manifests::ImageSource::from_registry(&image, &args.registry_options)?
            } else {
                manifests::ImageSource {
                    in_registry: true,
                    image: image.clone(),
                    ..manifests::ImageSource::from_layout(&packaged.layout, &tag, &layout)?
                }
            };
            if source.manifest_digest != packaged.manifest_digest {
                anyhow::bail!(
                    "{image} holds {} right after pushing {}: another push raced this one",
                    source.manifest_digest,
                    packaged.manifest_digest
                );
            }
            (source, true)
        }
        None => {
            eprintln!("[4/5] push skipped (no --registry)");
            (
                manifests::ImageSource::from_layout(&packaged.layout, &tag, &layout)?,
                false,
            )
        }
    };
    eprintln!("[5/5] manifests for {image}");
    let deployment = manifests::Deployment::new(&args.filter, &args.deploy, source)?;
    let written = deployment.write()?;

    eprintln!("published {} in {}", args.filter, timer.elapsed());

    let published = Published {
        filter: args.filter.clone(),
        wasm: built.wasm,
        wasm_size: built.size,
        wasm_digest: packaged.wasm_digest,
        manifest_digest: packaged.manifest_digest,
        layout: packaged.layout,
        image,
        pushed,
        manifests: written,
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&published).context("serializing the result")?
        );
    } else {
        println!(
            "wasm\t{}\t{} bytes\t{}",
            published.wasm.display(),
            published.wasm_size,
            published.wasm_digest
        );
        println!("layout\t{}", published.layout.display());
        println!("image\t{}", published.image);
        println!("manifest_digest\t{}", published.manifest_digest);
        published.manifests.print();
        if pushed {
            eprintln!(
                "next: see {} (one directory to `kubectl apply -f`); check with `cargo xtask pull {} <dir>`",
                published.manifests.readme.display(),
                published.image
            );
        } else {
            eprintln!(
                "next: try it in Envoy with `cargo xtask run {} --deployment {}`, or push with --registry <registry/repository:tag>",
                published.filter,
                published.manifests.asmfilterdeployment.display()
            );
        }
    }
    Ok(())
}
