//! `cargo xtask manifests <FILTER>`: the Kubernetes resources that deploy a packaged filter.
//!
//! Writes, under target/deploy/<NAME>/, one directory per way of deploying, each applied alone
//! with `kubectl apply -f <dir>` (two of them together would run the filter twice):
//! - `asm/asmfilterdeployment.yaml`: the seed's ASMFilterDeployment
//!   (istio.alibabacloud.com/v1beta1), field names exactly as the seed spells them;
//! - `istio/wasmplugin.yaml`: Istio's WasmPlugin (extensions.istio.io/v1alpha1), pulled by
//!   istiod's agent from the registry, pinned by the manifest digest the registry reports;
//! - `istio-hostpath/envoyfilter.yaml`: the EnvoyFilter ASM's controller generates (the module
//!   read from `/var/local/lib/wasm-filters/<wasm sha256>.wasm` on the node), which needs
//!   `workload-patch.yaml` (beside the directories, for `kubectl patch`: it is no resource);
//! - `envoy-gateway/envoyextensionpolicy.yaml`: Envoy Gateway's EnvoyExtensionPolicy with an
//!   OCI image source, pinned the same way;
//! - `README.md`: the commands.
//!
//! Without `--registry` no registry holds the image, so the WasmPlugin and the
//! EnvoyExtensionPolicy are written as `*.yaml.template` (which `kubectl apply -f <dir>` skips):
//! an unpullable image under `failStrategy: FAIL_CLOSE` would install a deny-all filter. A
//! one-layer image gets neither: Istio's image fetcher (which Envoy Gateway reuses) needs the
//! two-layer variant or the compat image. Both pin the manifest digest, which is what Istio
//! compares their `sha256` with for an `oci://` image; the hostpath EnvoyFilter names the
//! module by its own sha256 (for a compat image, that of the `plugin.wasm` inside the layer).
//!
//! The digests come from the registry when `--registry` is given (the image is pulled back),
//! else from the filter's image layout, target/oci/<FILTER>/ (`cargo xtask package`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use serde::Serialize;

use crate::oci::{self, RegistryArgs};
use crate::util;

/// Where the ASM node cache puts modules (hostPath mounted into the sidecar).
pub const WASM_FILTERS_DIR: &str = "/var/local/lib/wasm-filters";

/// What describes a deployment, shared by `manifests` and `publish`.
#[derive(clap::Args, Clone)]
pub struct DeployArgs {
    /// metadata.name of the resources and the directory under target/deploy/ [default: the filter name].
    #[arg(long)]
    pub name: Option<String>,
    /// metadata.namespace; `id` is `<name>.<namespace>`.
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// The plugin's root_id (spec.filter.rootID, WasmPlugin pluginName).
    #[arg(long, default_value = oci::DEFAULT_ROOT_ID)]
    pub root_id: String,
    /// Plugin configuration, a JSON document (spec.filter.parameters); absent = no configuration.
    /// Checked against filters/<FILTER>/config.schema.json when the filter has one.
    #[arg(long)]
    pub parameters: Option<String>,
    /// Workload labels, k=v,k=v [default: app=<filter name>].
    #[arg(long)]
    pub labels: Option<String>,
    /// A docker-registry secret for pulling the image (imagePullOptions.pullSecret).
    #[arg(long)]
    pub pull_secret: Option<String>,
    /// Where the filter goes in the chain.
    #[arg(long, value_enum, default_value_t = PatchContext::SidecarInbound)]
    pub patch_context: PatchContext,
    /// What the proxy does when the module cannot be fetched, loaded or configured, or traps:
    /// FAIL_OPEN skips the filter; FAIL_CLOSE denies every request the filter would see (right
    /// for an auth filter, a full outage for a typo).
    /// [default: the filter's `fail_strategy` in filters/<FILTER>/deploy.json, else FAIL_OPEN].
    #[arg(long, value_enum)]
    pub fail_strategy: Option<FailStrategy>,
    /// The Gateway the EnvoyExtensionPolicy attaches to (targetRefs, kind Gateway).
    #[arg(long, default_value = "eg")]
    pub gateway: String,
}

/// WasmPlugin spec.failStrategy (EnvoyFilter `fail_open`, EnvoyExtensionPolicy `failOpen`).
#[derive(clap::ValueEnum, serde::Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[clap(rename_all = "SCREAMING_SNAKE_CASE")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FailStrategy {
    FailOpen,
    FailClose,
}

impl FailStrategy {
    fn as_str(self) -> &'static str {
        match self {
            FailStrategy::FailOpen => "FAIL_OPEN",
            FailStrategy::FailClose => "FAIL_CLOSE",
        }
    }

    fn is_open(self) -> bool {
        self == FailStrategy::FailOpen
    }

    /// What the proxy does with traffic when the filter is broken.
    fn meaning(self) -> &'static str {
        match self {
            FailStrategy::FailOpen => {
                "a filter that cannot be fetched, loaded or configured, or that traps, is skipped: \
                 traffic bypasses it"
            }
            FailStrategy::FailClose => {
                "a filter that cannot be fetched, loaded or configured, or that traps, denies the \
                 requests it would see: they fail instead of reaching the workload"
            }
        }
    }
}

/// What a filter declares about how it must be deployed, in filters/<FILTER>/deploy.json
/// (absent = no needs):
/// `{"allow_on_headers_stop_iteration": true, "fail_strategy": "FAIL_CLOSE"}`.
#[derive(serde::Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FilterNeeds {
    /// Envoy's PluginConfig.allow_on_headers_stop_iteration: the filter pauses in its headers
    /// callback and must still get the body (without it Envoy holds the body back).
    #[serde(default)]
    pub allow_on_headers_stop_iteration: bool,
    /// The filter's default fail strategy (e.g. FAIL_CLOSE for an authorization filter);
    /// `--fail-strategy` overrides it.
    #[serde(default)]
    pub fail_strategy: Option<FailStrategy>,
}

/// filters/<filter>/deploy.json.
pub fn needs_path(filter: &str) -> PathBuf {
    util::project_root()
        .join("filters")
        .join(filter)
        .join("deploy.json")
}

/// The filter's declared needs; none when it has no deploy.json.
pub fn filter_needs(filter: &str) -> Result<FilterNeeds> {
    let path = needs_path(filter);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("parsing {}", util::relative(&path))),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(FilterNeeds::default()),
        Err(error) => Err(error).with_context(|| format!("reading {}", path.display())),
    }
}

/// spec.filter.patchContext.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
#[clap(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PatchContext {
    SidecarInbound,
    SidecarOutbound,
    Gateway,
}

impl PatchContext {
    fn as_str(self) -> &'static str {
        match self {
            PatchContext::SidecarInbound => "SIDECAR_INBOUND",
            PatchContext::SidecarOutbound => "SIDECAR_OUTBOUND",
            PatchContext::Gateway => "GATEWAY",
        }
    }

    /// The WasmPlugin traffic selector for this context.
    fn wasm_plugin_mode(self) -> &'static str {
        match self {
            PatchContext::SidecarInbound => "SERVER",
            PatchContext::SidecarOutbound | PatchContext::Gateway => "CLIENT",
        }
    }
}

#[derive(clap::Args)]
pub struct Args {
    /// The filter; without --registry its layout target/oci/<FILTER>/ must exist
    /// (`cargo xtask package <FILTER>`).
    pub filter: String,
    #[command(flatten)]
    pub deploy: DeployArgs,
    /// The pushed image, registry/repository[:tag]: it is pulled back and the resources are
    /// pinned by the digest the registry serves [default: none; the WasmPlugin and the
    /// EnvoyExtensionPolicy are then templates].
    #[arg(long)]
    pub registry: Option<String>,
    /// Tag used when --registry has none [default: the layout's tag].
    #[arg(long)]
    pub tag: Option<String>,
    #[command(flatten)]
    pub registry_options: RegistryArgs,
    /// Print one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> Result<()> {
    // Check the options (and the parameters against the filter's schema) before any I/O.
    args.deploy.check(&args.filter)?;
    let layout_dir = oci::layout_dir(&args.filter);
    let layout = oci::Layout::read(&layout_dir, None)
        .with_context(|| format!("reading the layout of {}", args.filter));
    let source = match (&args.registry, layout) {
        (Some(registry), layout) => {
            // The registry's image is what counts; a local layout only supplies a default tag
            // and a comparison.
            let layout = layout.ok();
            let layout_tag = layout.as_ref().and_then(|layout| layout.tag.clone());
            let tag = resolve_tag(
                Some(registry),
                args.tag.as_deref(),
                layout_tag.as_deref().unwrap_or(oci::DEFAULT_TAG),
            )?;
            let image = registry_image(registry, &tag)?;
            let source = ImageSource::from_registry(&image, &args.registry_options)?;
            if let Some(layout) =
                layout.filter(|layout| layout.manifest_digest != source.manifest_digest)
            {
                eprintln!(
                    "warning: {image} is {} but the local layout is {}: the resources pin what the registry holds",
                    source.manifest_digest, layout.manifest_digest
                );
            }
            source
        }
        (None, layout) => {
            let layout = layout?;
            let layout_tag = layout.tag.as_deref().unwrap_or(oci::DEFAULT_TAG);
            let tag = resolve_tag(None, args.tag.as_deref(), layout_tag)?;
            ImageSource::from_layout(&layout_dir, &tag, &layout)?
        }
    };
    let deployment = Deployment::new(&args.filter, &args.deploy, source)?;
    let written = deployment.write()?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&written).context("serializing the result")?
        );
    } else {
        written.print();
    }
    Ok(())
}

/// The tag to publish under: the reference's own, else `--tag`, else `fallback`.
pub fn resolve_tag(registry: Option<&str>, tag: Option<&str>, fallback: &str) -> Result<String> {
    if let Some(registry) = registry {
        let reference = oci::parse_reference(registry).context("in --registry")?;
        ensure!(
            reference.digest().is_none(),
            "--registry {registry} names a digest: give a repository and tag to push to"
        );
        if let Some(own) = oci::explicit_tag(registry) {
            if let Some(tag) = tag.filter(|tag| *tag != own) {
                bail!("--registry {registry} has tag {own} but --tag says {tag}: give one");
            }
            return Ok(own.to_string());
        }
    }
    Ok(tag.unwrap_or(fallback).to_string())
}

/// `registry/repository:tag` as the user wrote the registry and repository.
pub fn registry_image(registry: &str, tag: &str) -> Result<String> {
    oci::parse_reference(registry).context("in --registry")?;
    Ok(if oci::explicit_tag(registry).is_some() {
        registry.to_string()
    } else {
        format!("{registry}:{tag}")
    })
}

/// The image the resources name, and where its digests come from.
#[derive(Debug, Clone)]
pub struct ImageSource {
    /// registry/repository:tag, or the local layout's reference.
    pub image: String,
    /// True when a registry served `manifest_digest` for `image`.
    pub in_registry: bool,
    /// What Istio's WasmPlugin `sha256` and Envoy Gateway's image `sha256` pin: Istio's image
    /// fetcher compares them with the manifest digest (`img.Digest()`), whatever the layout.
    pub manifest_digest: String,
    /// The module's own sha256 (in a compat image, of the `plugin.wasm` inside the layer),
    /// which names the file in ASM's node cache.
    pub wasm_digest: String,
    /// The seed's one-layer manifest, which Istio's image fetcher rejects.
    pub single_layer: bool,
}

impl ImageSource {
    /// A local layout only: no registry holds the image.
    pub fn from_layout(dir: &Path, tag: &str, layout: &oci::Layout) -> Result<ImageSource> {
        Ok(ImageSource {
            image: oci::layout_reference(dir, tag),
            in_registry: false,
            manifest_digest: layout.manifest_digest.clone(),
            wasm_digest: layout.module_digest()?,
            single_layer: layout.manifest.layers.len() == 1 && layout.manifest.layers[0].is_wasm(),
        })
    }

    /// Pulls `image` back (into a scratch directory) and takes the digests the registry serves.
    pub fn from_registry(image: &str, registry: &RegistryArgs) -> Result<ImageSource> {
        let scratch = util::target_dir()
            .join("tmp")
            .join(format!("manifests-pull-{}", std::process::id()));
        let pulled = crate::pull::pull_to_dir(image, &scratch, registry, false)
            .with_context(|| format!("asking the registry for {image}"));
        let _ = std::fs::remove_dir_all(&scratch);
        let pulled = pulled?;
        Ok(ImageSource {
            image: image.to_string(),
            in_registry: true,
            manifest_digest: pulled.manifest_digest,
            wasm_digest: pulled.wasm_digest,
            single_layer: pulled.single_wasm_layer,
        })
    }
}

/// Everything the resources are made from.
#[derive(Debug)]
pub struct Deployment {
    pub name: String,
    pub namespace: String,
    pub labels: Vec<(String, String)>,
    pub root_id: String,
    /// The JSON text exactly as given, if any.
    pub parameters: Option<String>,
    pub pull_secret: Option<String>,
    pub patch_context: PatchContext,
    pub fail_strategy: FailStrategy,
    /// Where `fail_strategy` came from: `--fail-strategy`, the filter's deploy.json, or the default.
    pub fail_strategy_origin: &'static str,
    /// Sets Envoy's allow_on_headers_stop_iteration where the target's API has it.
    pub allow_on_headers_stop_iteration: bool,
    pub gateway: String,
    pub source: ImageSource,
}

/// The files written; `wasmplugin` and `envoyextensionpolicy` end in `.yaml.template` when no
/// registry holds the image, and are absent for a one-layer image.
#[derive(Serialize, Debug)]
pub struct Written {
    pub dir: PathBuf,
    pub asmfilterdeployment: PathBuf,
    pub wasmplugin: Option<PathBuf>,
    pub envoyfilter: PathBuf,
    /// The strategic-merge patch that mounts the node's module directory into the sidecar.
    pub workload_patch: PathBuf,
    pub envoyextensionpolicy: Option<PathBuf>,
    pub readme: PathBuf,
}

impl Written {
    pub fn print(&self) {
        println!(
            "asmfilterdeployment\t{}",
            self.asmfilterdeployment.display()
        );
        if let Some(path) = &self.wasmplugin {
            println!("wasmplugin\t{}", path.display());
        }
        println!("envoyfilter\t{}", self.envoyfilter.display());
        println!("workload_patch\t{}", self.workload_patch.display());
        if let Some(path) = &self.envoyextensionpolicy {
            println!("envoyextensionpolicy\t{}", path.display());
        }
        println!("readme\t{}", self.readme.display());
    }
}

impl DeployArgs {
    /// Checks the options (before any slow step) and returns the resources' name and the
    /// workload labels, with their defaults for `filter` filled in. The parameters are checked
    /// against the filter's config schema, and a warning names fields that look like
    /// credentials.
    pub fn check(&self, filter: &str) -> Result<(String, Vec<(String, String)>)> {
        let name = self.name.clone().unwrap_or_else(|| filter.to_string());
        ensure!(
            is_dns_label(&name) || is_dns_subdomain(&name),
            "--name {name:?} is not a valid Kubernetes name (lowercase letters, digits, '-', '.')"
        );
        ensure!(
            is_dns_label(&self.namespace),
            "--namespace {:?} is not a valid Kubernetes namespace",
            self.namespace
        );
        ensure!(!self.root_id.is_empty(), "--root-id must not be empty");
        ensure!(
            is_dns_subdomain(&self.gateway),
            "--gateway {:?} is not a valid Kubernetes name",
            self.gateway
        );
        if let Some(parameters) = &self.parameters {
            let value = serde_json::from_str::<serde_json::Value>(parameters)
                .with_context(|| format!("--parameters is not JSON: {parameters}"))?;
            for field in credential_fields(&value) {
                eprintln!(
                    "warning: --parameters field {field} looks like a credential: the resources \
                     carry it in plain text, readable by anyone who can read them or the proxy's \
                     config dump; keep secrets out of plugin configuration"
                );
            }
            crate::config_schema::check_parameters(filter, &value)?;
        }
        let labels = match &self.labels {
            Some(labels) => parse_labels(labels)?,
            None => vec![("app".to_string(), filter.to_string())],
        };
        Ok((name, labels))
    }
}

/// Paths (`a.b[0].c`) of fields whose name says password, secret, token, key or credential.
pub fn credential_fields(value: &serde_json::Value) -> Vec<String> {
    fn walk(value: &serde_json::Value, path: &str, found: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(object) => {
                for (key, field) in object {
                    let field_path = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    let normalized: String = key
                        .chars()
                        .filter(char::is_ascii_alphanumeric)
                        .collect::<String>()
                        .to_ascii_lowercase();
                    let looks_secret = [
                        "password",
                        "passwd",
                        "secret",
                        "token",
                        "apikey",
                        "privatekey",
                        "credential",
                        "authorization",
                    ]
                    .iter()
                    .any(|word| normalized.contains(word));
                    if looks_secret && !field.is_null() {
                        found.push(field_path.clone());
                    }
                    walk(field, &field_path, found);
                }
            }
            serde_json::Value::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    walk(item, &format!("{path}[{index}]"), found);
                }
            }
            _ => {}
        }
    }
    let mut found = Vec::new();
    walk(value, "", &mut found);
    found
}

impl Deployment {
    /// Checks the options; the image and its digests come from `source`.
    pub fn new(filter: &str, args: &DeployArgs, source: ImageSource) -> Result<Deployment> {
        let (name, labels) = args.check(filter)?;
        let needs = filter_needs(filter)?;
        let (fail_strategy, fail_strategy_origin) = match (args.fail_strategy, needs.fail_strategy)
        {
            (Some(chosen), _) => (chosen, "--fail-strategy"),
            (None, Some(declared)) => (declared, "the filter's deploy.json"),
            (None, None) => (FailStrategy::FailOpen, "the default"),
        };
        Ok(Deployment {
            name,
            namespace: args.namespace.clone(),
            labels,
            root_id: args.root_id.clone(),
            parameters: args.parameters.clone(),
            pull_secret: args.pull_secret.clone(),
            patch_context: args.patch_context,
            fail_strategy,
            fail_strategy_origin,
            allow_on_headers_stop_iteration: needs.allow_on_headers_stop_iteration,
            gateway: args.gateway.clone(),
            source,
        })
    }

    /// `<name>.<namespace>`, the seed's spec.filter.id.
    pub fn id(&self) -> String {
        format!("{}.{}", self.name, self.namespace)
    }

    fn metadata(&self) -> Metadata<'_> {
        Metadata {
            name: &self.name,
            namespace: &self.namespace,
        }
    }

    /// The ASMFilterDeployment YAML.
    pub fn asm_filter_deployment(&self) -> Result<String> {
        let resource = AsmFilterDeployment {
            api_version: "istio.alibabacloud.com/v1beta1",
            kind: "ASMFilterDeployment",
            metadata: self.metadata(),
            spec: AsmSpec {
                workload: Workload {
                    kind: "Deployment",
                    labels: Labels(&self.labels),
                },
                filter: AsmFilter {
                    patch_context: (self.patch_context != PatchContext::SidecarInbound)
                        .then(|| self.patch_context.as_str()),
                    parameters: self.parameters.as_deref(),
                    image: &self.source.image,
                    image_pull_options: self
                        .pull_secret
                        .as_deref()
                        .map(|pull_secret| PullOptions { pull_secret }),
                    root_id: &self.root_id,
                    id: self.id(),
                },
            },
        };
        serde_yaml_ng::to_string(&resource).context("serializing the ASMFilterDeployment")
    }

    /// The EnvoyFilter ASM's controller would generate.
    pub fn envoy_filter(&self) -> Result<String> {
        let wasm_hex = self.source.wasm_digest.trim_start_matches("sha256:");
        let resource = EnvoyFilter {
            api_version: "networking.istio.io/v1alpha3",
            kind: "EnvoyFilter",
            metadata: self.metadata(),
            spec: EnvoyFilterSpec {
                workload_selector: WorkloadSelector { labels: Labels(&self.labels) },
                config_patches: vec![ConfigPatch {
                    apply_to: "HTTP_FILTER",
                    r#match: PatchMatch {
                        context: self.patch_context.as_str(),
                        listener: ListenerMatch {
                            filter_chain: FilterChainMatch {
                                filter: FilterMatch {
                                    name: "envoy.filters.network.http_connection_manager",
                                    sub_filter: SubFilterMatch { name: "envoy.filters.http.router" },
                                },
                            },
                        },
                    },
                    patch: Patch {
                        operation: "INSERT_BEFORE",
                        value: HttpFilter {
                            name: "envoy.filters.http.wasm",
                            typed_config: WasmFilterConfig {
                                type_url: "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                                config: PluginConfig {
                                    name: self.id(),
                                    root_id: &self.root_id,
                                    vm_config: VmConfig {
                                        vm_id: crate::envoy::vm_id(&self.name).to_string(),
                                        runtime: "envoy.wasm.runtime.v8",
                                        code: Code { local: LocalCode { filename: format!("{WASM_FILTERS_DIR}/{wasm_hex}.wasm") } },
                                    },
                                    configuration: self.parameters.as_deref().map(|value| StringValue {
                                        type_url: "type.googleapis.com/google.protobuf.StringValue",
                                        value,
                                    }),
                                    fail_open: self.fail_strategy.is_open(),
                                    allow_on_headers_stop_iteration: self
                                        .allow_on_headers_stop_iteration
                                        .then_some(true),
                                },
                            },
                        },
                    },
                }],
            },
        };
        serde_yaml_ng::to_string(&resource).context("serializing the EnvoyFilter")
    }

    /// The parameters as a JSON object (WasmPlugin pluginConfig is a Struct).
    fn parameters_object(&self) -> Result<Option<serde_json::Value>> {
        match &self.parameters {
            None => Ok(None),
            Some(parameters) => match serde_json::from_str::<serde_json::Value>(parameters)? {
                object @ serde_json::Value::Object(_) => Ok(Some(object)),
                _ => bail!(
                    "--parameters must be a JSON object for the WasmPlugin's pluginConfig (a Struct), got {parameters}"
                ),
            },
        }
    }

    /// The Istio WasmPlugin.
    pub fn wasm_plugin(&self) -> Result<String> {
        let resource = WasmPlugin {
            api_version: "extensions.istio.io/v1alpha1",
            kind: "WasmPlugin",
            metadata: self.metadata(),
            spec: WasmPluginSpec {
                selector: Selector {
                    match_labels: Labels(&self.labels),
                },
                url: format!("oci://{}", self.source.image),
                sha256: self.source.manifest_digest.trim_start_matches("sha256:"),
                image_pull_policy: "IfNotPresent",
                image_pull_secret: self.pull_secret.as_deref(),
                plugin_name: &self.root_id,
                plugin_config: self.parameters_object()?,
                fail_strategy: self.fail_strategy.as_str(),
                r#match: vec![TrafficSelector {
                    mode: self.patch_context.wasm_plugin_mode(),
                }],
            },
        };
        serde_yaml_ng::to_string(&resource).context("serializing the WasmPlugin")
    }

    /// Envoy Gateway's EnvoyExtensionPolicy: the module from the OCI image, pinned by its
    /// manifest digest, attached to the Gateway `--gateway`.
    pub fn envoy_extension_policy(&self) -> Result<String> {
        let mut image = serde_json::json!({
            "url": self.source.image,
            "sha256": self.source.manifest_digest.trim_start_matches("sha256:"),
        });
        if let Some(secret) = &self.pull_secret {
            image["pullSecretRef"] = serde_json::json!({ "kind": "Secret", "name": secret });
        }
        let mut wasm = serde_json::json!({
            "name": self.id(),
            "rootID": self.root_id,
            "code": { "type": "Image", "image": image },
            "failOpen": self.fail_strategy.is_open(),
        });
        if let Some(parameters) = &self.parameters {
            wasm["config"] = serde_json::from_str(parameters)?;
        }
        let resource = serde_json::json!({
            "apiVersion": "gateway.envoyproxy.io/v1alpha1",
            "kind": "EnvoyExtensionPolicy",
            "metadata": { "name": self.name, "namespace": self.namespace },
            "spec": {
                "targetRefs": [{
                    "group": "gateway.networking.k8s.io",
                    "kind": "Gateway",
                    "name": self.gateway,
                }],
                "wasm": [wasm],
            },
        });
        serde_yaml_ng::to_string(&resource).context("serializing the EnvoyExtensionPolicy")
    }

    /// The strategic-merge patch for `kubectl patch deployment <name> --type strategic
    /// --patch-file workload-patch.yaml` that mounts the node's module directory into the
    /// sidecar. It adds a pod volume and an `istio-proxy` container entry, which Istio's
    /// injector merges into the sidecar it injects (`image: auto` is its placeholder): lists
    /// merge by name (volumes, containers) and mountPath (volumeMounts), so existing volumes
    /// and `sidecar.istio.io/userVolume` / `userVolumeMount` annotations are left as they are,
    /// unlike a patch that sets those annotations, which would replace their JSON lists.
    pub fn workload_patch(&self) -> Result<String> {
        let patch = serde_json::json!({
            "spec": { "template": { "spec": {
                "volumes": [{
                    "name": "wasmfilters-dir",
                    "hostPath": { "path": WASM_FILTERS_DIR, "type": "Directory" },
                }],
                "containers": [{
                    "name": "istio-proxy",
                    "image": "auto",
                    "volumeMounts": [{
                        "name": "wasmfilters-dir",
                        "mountPath": WASM_FILTERS_DIR,
                        "readOnly": true,
                    }],
                }],
            } } }
        });
        serde_yaml_ng::to_string(&patch).context("serializing the workload patch")
    }

    /// A header comment for a file no registry backs yet.
    fn template_header(&self, kind: &str) -> String {
        format!(
            "# TEMPLATE, not a resource to apply: no registry holds {image}, so the {kind} naming \
             it\n# would fail to fetch (and under FAIL_CLOSE deny all traffic). `cargo xtask publish \
             --registry\n# <registry/repository:tag>` pushes the image and writes the real file, \
             pinned by the\n# digest the registry reports. `kubectl apply -f <dir>` skips this \
             file (.template).\n",
            image = self.source.image,
        )
    }

    /// The README beside the directories: which to apply, and the commands.
    pub fn readme(&self) -> String {
        let mut text = String::new();
        let name = &self.name;
        let namespace = &self.namespace;
        let _ = writeln!(text, "# Deploying {name} ({})\n", self.source.image);
        let _ = writeln!(
            text,
            "Pick one directory and apply it alone: two of them would run the filter twice.\n"
        );
        let _ = writeln!(
            text,
            "Fail strategy: **{}** (from {}; change it with `--fail-strategy`).\n\n\
             - FAIL_OPEN: {}.\n\
             - FAIL_CLOSE: {}.\n",
            self.fail_strategy.as_str(),
            self.fail_strategy_origin,
            FailStrategy::FailOpen.meaning(),
            FailStrategy::FailClose.meaning(),
        );
        if let Some(note) = self.stop_iteration_note() {
            let _ = writeln!(text, "{note}\n");
        }
        if self.source.in_registry {
            let _ = writeln!(
                text,
                "- ASM: `kubectl apply -f asm/` (the ASMFilterDeployment; ASM's node cache pulls the image)."
            );
        } else {
            let _ = writeln!(
                text,
                "- ASM: only a template (`asm/asmfilterdeployment.yaml.template`): its image names no \
                 registry. Publish with `--registry`. (`cargo xtask run` reads the template as it is.)"
            );
        }
        if self.source.single_layer {
            let _ = writeln!(
                text,
                "- Istio WasmPlugin, Envoy Gateway: not written. The image has the seed's one-layer \
                 manifest and Istio's image fetcher (which Envoy Gateway reuses) needs the two-layer \
                 or the compat variant: publish with `--format oci` or `--format compat`."
            );
        } else if self.source.in_registry {
            let _ = writeln!(
                text,
                "- Istio: `kubectl apply -f istio/` (a WasmPlugin pinned to sha256 {}).\n\
                 - Envoy Gateway: `kubectl apply -f envoy-gateway/` (an EnvoyExtensionPolicy on Gateway `{}`).",
                self.source.manifest_digest, self.gateway
            );
        } else {
            let _ = writeln!(
                text,
                "- Istio, Envoy Gateway: only templates (`*.yaml.template`), since no registry holds \
                 the image yet: publish with `--registry`."
            );
        }
        let wasm_hex = self.source.wasm_digest.trim_start_matches("sha256:");
        let _ = writeln!(
            text,
            "- Istio with the module on the node (no registry): put the module at \
             `{WASM_FILTERS_DIR}/{wasm_hex}.wasm` on every node, then\n\n\
             ```\n\
             kubectl -n {namespace} patch deployment <deployment> --type strategic --patch-file workload-patch.yaml\n\
             kubectl apply -f istio-hostpath/\n\
             ```\n\n  \
             The patch adds a hostPath volume and mounts it into the injected `istio-proxy` \
             container; existing volumes and `sidecar.istio.io/userVolume` annotations stay."
        );
        text
    }

    /// The header comments of a `kind` file: a template's, then what its API cannot carry.
    fn headers(&self, kind: &str) -> String {
        let template = if self.source.in_registry {
            String::new()
        } else {
            self.template_header(kind)
        };
        template + &self.unexpressible_header(kind)
    }

    /// A header comment for a resource whose API cannot carry what the filter needs.
    fn unexpressible_header(&self, kind: &str) -> String {
        if self.allow_on_headers_stop_iteration {
            format!(
                "# WARNING: the filter needs Envoy's allow_on_headers_stop_iteration, which the {kind} API \
                 cannot\n# set: requests with a body would get no answer. Use \
                 istio-hostpath/envoyfilter.yaml.\n"
            )
        } else {
            String::new()
        }
    }

    /// Where the targets stand on allow_on_headers_stop_iteration, when the filter needs it.
    fn stop_iteration_note(&self) -> Option<String> {
        self.allow_on_headers_stop_iteration.then(|| {
            "This filter needs Envoy's `allow_on_headers_stop_iteration: true` (it pauses in its \
             headers callback and must still get the body; filters/<filter>/deploy.json). Set in: \
             `istio-hostpath/envoyfilter.yaml` and `cargo xtask run`. NOT expressible in: the \
             WasmPlugin (no such field; istiod never sets it), the EnvoyExtensionPolicy (no such \
             field in Envoy Gateway's Wasm API), the ASMFilterDeployment (ASM's controller \
             generates the EnvoyFilter without it): through those, requests with a body get no \
             answer. Use `istio-hostpath/`."
                .to_string()
        })
    }

    /// Renders every file (so a bad option fails before anything is written), replaces
    /// target/deploy/<name>/ with them, and says on stderr what was left out and why.
    pub fn write(&self) -> Result<Written> {
        let dir = deploy_dir(&self.name);
        let suffix = if self.source.in_registry {
            "yaml"
        } else {
            "yaml.template"
        };
        let mut files: Vec<(PathBuf, String)> = Vec::new();
        let asmfilterdeployment = dir
            .join("asm")
            .join(format!("asmfilterdeployment.{suffix}"));
        let asm_header = self.headers("ASMFilterDeployment");
        files.push((
            asmfilterdeployment.clone(),
            asm_header + &self.asm_filter_deployment()?,
        ));
        eprintln!(
            "fail strategy: {} (from {}): {}",
            self.fail_strategy.as_str(),
            self.fail_strategy_origin,
            self.fail_strategy.meaning()
        );
        if let Some(note) = self.stop_iteration_note() {
            eprintln!("{note}");
        }
        let envoyfilter = dir.join("istio-hostpath").join("envoyfilter.yaml");
        files.push((envoyfilter.clone(), self.envoy_filter()?));
        let workload_patch = dir.join("workload-patch.yaml");
        files.push((workload_patch.clone(), self.workload_patch()?));
        let (wasmplugin, envoyextensionpolicy) = if self.source.single_layer {
            eprintln!(
                "no WasmPlugin or EnvoyExtensionPolicy: {} is a one-layer image, which Istio's \
                 image fetcher (also Envoy Gateway's) rejects; publish with --format oci or --format compat",
                self.source.image
            );
            (None, None)
        } else {
            let header = |kind: &str| self.headers(kind);
            let wasmplugin = dir.join("istio").join(format!("wasmplugin.{suffix}"));
            files.push((
                wasmplugin.clone(),
                header("WasmPlugin") + &self.wasm_plugin()?,
            ));
            let policy = dir
                .join("envoy-gateway")
                .join(format!("envoyextensionpolicy.{suffix}"));
            files.push((
                policy.clone(),
                header("EnvoyExtensionPolicy") + &self.envoy_extension_policy()?,
            ));
            if !self.source.in_registry {
                eprintln!(
                    "ASMFilterDeployment, WasmPlugin and EnvoyExtensionPolicy written as templates: no registry holds {} (use --registry)",
                    self.source.image
                );
            }
            (Some(wasmplugin), Some(policy))
        };
        let readme = dir.join("README.md");
        files.push((readme.clone(), self.readme()));
        // A previous run's files (e.g. a real wasmplugin.yaml) must not outlive this one.
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("removing the old {}", dir.display()))?;
        }
        for (path, text) in &files {
            util::write_atomic(path, text.as_bytes())?;
        }
        eprintln!("wrote {}", util::relative(&dir));
        Ok(Written {
            dir,
            asmfilterdeployment,
            wasmplugin,
            envoyfilter,
            workload_patch,
            envoyextensionpolicy,
            readme,
        })
    }
}

/// target/deploy/<name>.
pub fn deploy_dir(name: &str) -> PathBuf {
    util::target_dir().join("deploy").join(name)
}

/// Parses `k=v,k=v` workload labels.
fn parse_labels(text: &str) -> Result<Vec<(String, String)>> {
    let mut labels: Vec<(String, String)> = Vec::new();
    for pair in text
        .split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
    {
        let (key, value) = pair
            .split_once('=')
            .with_context(|| format!("--labels: {pair:?} is not key=value"))?;
        let (key, value) = (key.trim(), value.trim());
        ensure!(
            is_label_key(key),
            "--labels: {key:?} is not a valid label key"
        );
        ensure!(
            is_label_value(value),
            "--labels: {value:?} (for {key}) is not a valid label value"
        );
        ensure!(
            !labels.iter().any(|(seen, _)| seen == key),
            "--labels: {key} is given twice"
        );
        labels.push((key.to_string(), value.to_string()));
    }
    ensure!(
        !labels.is_empty(),
        "--labels is empty: a selector without labels would match every workload in the namespace"
    );
    Ok(labels)
}

fn is_label_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn is_label_key(key: &str) -> bool {
    match key.split_once('/') {
        Some((prefix, name)) => is_dns_subdomain(prefix) && is_label_name(name),
        None => is_label_name(key),
    }
}

fn is_label_value(value: &str) -> bool {
    value.is_empty() || is_label_name(value)
}

fn is_dns_label(text: &str) -> bool {
    let bytes = text.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

fn is_dns_subdomain(text: &str) -> bool {
    text.len() <= 253 && text.split('.').all(is_dns_label)
}

/// Workload labels in the order given, serialized as a map.
struct Labels<'a>(&'a [(String, String)]);

impl Serialize for Labels<'_> {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(key, value)| (key, value)))
    }
}

#[derive(Serialize)]
struct Metadata<'a> {
    name: &'a str,
    namespace: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AsmFilterDeployment<'a> {
    api_version: &'a str,
    kind: &'a str,
    metadata: Metadata<'a>,
    spec: AsmSpec<'a>,
}

#[derive(Serialize)]
struct AsmSpec<'a> {
    workload: Workload<'a>,
    filter: AsmFilter<'a>,
}

#[derive(Serialize)]
struct Workload<'a> {
    kind: &'a str,
    labels: Labels<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AsmFilter<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_context: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<&'a str>,
    image: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    image_pull_options: Option<PullOptions<'a>>,
    #[serde(rename = "rootID")]
    root_id: &'a str,
    id: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PullOptions<'a> {
    pull_secret: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EnvoyFilter<'a> {
    api_version: &'a str,
    kind: &'a str,
    metadata: Metadata<'a>,
    spec: EnvoyFilterSpec<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EnvoyFilterSpec<'a> {
    workload_selector: WorkloadSelector<'a>,
    config_patches: Vec<ConfigPatch<'a>>,
}

#[derive(Serialize)]
struct WorkloadSelector<'a> {
    labels: Labels<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConfigPatch<'a> {
    apply_to: &'a str,
    r#match: PatchMatch<'a>,
    patch: Patch<'a>,
}

#[derive(Serialize)]
struct PatchMatch<'a> {
    context: &'a str,
    listener: ListenerMatch<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ListenerMatch<'a> {
    filter_chain: FilterChainMatch<'a>,
}

#[derive(Serialize)]
struct FilterChainMatch<'a> {
    filter: FilterMatch<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FilterMatch<'a> {
    name: &'a str,
    sub_filter: SubFilterMatch<'a>,
}

#[derive(Serialize)]
struct SubFilterMatch<'a> {
    name: &'a str,
}

#[derive(Serialize)]
struct Patch<'a> {
    operation: &'a str,
    value: HttpFilter<'a>,
}

/// Inside `patch.value` Istio takes Envoy's proto field names (snake_case).
#[derive(Serialize)]
struct HttpFilter<'a> {
    name: &'a str,
    typed_config: WasmFilterConfig<'a>,
}

#[derive(Serialize)]
struct WasmFilterConfig<'a> {
    #[serde(rename = "@type")]
    type_url: &'a str,
    config: PluginConfig<'a>,
}

#[derive(Serialize)]
struct PluginConfig<'a> {
    name: String,
    root_id: &'a str,
    vm_config: VmConfig<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    configuration: Option<StringValue<'a>>,
    /// Envoy's PluginConfig.fail_open (deprecated for failure_policy in newer Envoys, which
    /// still take it; the ASM-era Envoys know only this one).
    fail_open: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    allow_on_headers_stop_iteration: Option<bool>,
}

#[derive(Serialize)]
struct VmConfig<'a> {
    vm_id: String,
    runtime: &'a str,
    code: Code,
}

#[derive(Serialize)]
struct Code {
    local: LocalCode,
}

#[derive(Serialize)]
struct LocalCode {
    filename: String,
}

#[derive(Serialize)]
struct StringValue<'a> {
    #[serde(rename = "@type")]
    type_url: &'a str,
    value: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WasmPlugin<'a> {
    api_version: &'a str,
    kind: &'a str,
    metadata: Metadata<'a>,
    spec: WasmPluginSpec<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WasmPluginSpec<'a> {
    selector: Selector<'a>,
    url: String,
    sha256: &'a str,
    image_pull_policy: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    image_pull_secret: Option<&'a str>,
    plugin_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    plugin_config: Option<serde_json::Value>,
    fail_strategy: &'a str,
    r#match: Vec<TrafficSelector<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Selector<'a> {
    match_labels: Labels<'a>,
}

#[derive(Serialize)]
struct TrafficSelector<'a> {
    mode: &'a str,
}

#[cfg(test)]
mod tests {
    use expect_test::{Expect, expect};

    use super::{Deployment, FailStrategy, ImageSource, PatchContext};

    pub(super) fn seed() -> Deployment {
        Deployment {
            name: "details-v1-wasmfiltersample".to_string(),
            namespace: "default".to_string(),
            labels: vec![
                ("app".to_string(), "details".to_string()),
                ("version".to_string(), "v1".to_string()),
            ],
            root_id: "my_root_id".to_string(),
            parameters: Some(r#"{"name":"hello","value":"hello details"}"#.to_string()),
            pull_secret: Some("asmwasm-cache".to_string()),
            patch_context: PatchContext::SidecarInbound,
            fail_strategy: FailStrategy::FailOpen,
            fail_strategy_origin: "the default",
            allow_on_headers_stop_iteration: false,
            gateway: "eg".to_string(),
            source: ImageSource {
                image: "127.0.0.1:5000/asm/asm-test:v0.1".to_string(),
                in_registry: true,
                manifest_digest: format!("sha256:{}", "a".repeat(64)),
                wasm_digest: format!("sha256:{}", "b".repeat(64)),
                single_layer: false,
            },
        }
    }

    fn check(deployment: Deployment, expect: Expect) {
        let render = |result: anyhow::Result<String>| {
            result.unwrap_or_else(|error| format!("error: {error:#}\n"))
        };
        let actual = format!(
            "{}---\n{}---\n{}---\n{}---\n{}",
            render(deployment.asm_filter_deployment()),
            render(deployment.envoy_filter()),
            render(deployment.wasm_plugin()),
            render(deployment.envoy_extension_policy()),
            render(deployment.workload_patch())
        );
        expect.assert_eq(&actual);
    }

    #[test]
    fn renders_the_seed_deployment() {
        check(
            seed(),
            expect![[r#"
                apiVersion: istio.alibabacloud.com/v1beta1
                kind: ASMFilterDeployment
                metadata:
                  name: details-v1-wasmfiltersample
                  namespace: default
                spec:
                  workload:
                    kind: Deployment
                    labels:
                      app: details
                      version: v1
                  filter:
                    parameters: '{"name":"hello","value":"hello details"}'
                    image: 127.0.0.1:5000/asm/asm-test:v0.1
                    imagePullOptions:
                      pullSecret: asmwasm-cache
                    rootID: my_root_id
                    id: details-v1-wasmfiltersample.default
                ---
                apiVersion: networking.istio.io/v1alpha3
                kind: EnvoyFilter
                metadata:
                  name: details-v1-wasmfiltersample
                  namespace: default
                spec:
                  workloadSelector:
                    labels:
                      app: details
                      version: v1
                  configPatches:
                  - applyTo: HTTP_FILTER
                    match:
                      context: SIDECAR_INBOUND
                      listener:
                        filterChain:
                          filter:
                            name: envoy.filters.network.http_connection_manager
                            subFilter:
                              name: envoy.filters.http.router
                    patch:
                      operation: INSERT_BEFORE
                      value:
                        name: envoy.filters.http.wasm
                        typed_config:
                          '@type': type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
                          config:
                            name: details-v1-wasmfiltersample.default
                            root_id: my_root_id
                            vm_config:
                              vm_id: details-v1-wasmfiltersample
                              runtime: envoy.wasm.runtime.v8
                              code:
                                local:
                                  filename: /var/local/lib/wasm-filters/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb.wasm
                            configuration:
                              '@type': type.googleapis.com/google.protobuf.StringValue
                              value: '{"name":"hello","value":"hello details"}'
                            fail_open: true
                ---
                apiVersion: extensions.istio.io/v1alpha1
                kind: WasmPlugin
                metadata:
                  name: details-v1-wasmfiltersample
                  namespace: default
                spec:
                  selector:
                    matchLabels:
                      app: details
                      version: v1
                  url: oci://127.0.0.1:5000/asm/asm-test:v0.1
                  sha256: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
                  imagePullPolicy: IfNotPresent
                  imagePullSecret: asmwasm-cache
                  pluginName: my_root_id
                  pluginConfig:
                    name: hello
                    value: hello details
                  failStrategy: FAIL_OPEN
                  match:
                  - mode: SERVER
                ---
                apiVersion: gateway.envoyproxy.io/v1alpha1
                kind: EnvoyExtensionPolicy
                metadata:
                  name: details-v1-wasmfiltersample
                  namespace: default
                spec:
                  targetRefs:
                  - group: gateway.networking.k8s.io
                    kind: Gateway
                    name: eg
                  wasm:
                  - code:
                      image:
                        pullSecretRef:
                          kind: Secret
                          name: asmwasm-cache
                        sha256: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
                        url: 127.0.0.1:5000/asm/asm-test:v0.1
                      type: Image
                    config:
                      name: hello
                      value: hello details
                    failOpen: true
                    name: details-v1-wasmfiltersample.default
                    rootID: my_root_id
                ---
                spec:
                  template:
                    spec:
                      containers:
                      - image: auto
                        name: istio-proxy
                        volumeMounts:
                        - mountPath: /var/local/lib/wasm-filters
                          name: wasmfilters-dir
                          readOnly: true
                      volumes:
                      - hostPath:
                          path: /var/local/lib/wasm-filters
                          type: Directory
                        name: wasmfilters-dir
            "#]],
        );
    }

    #[test]
    fn omits_configuration_without_parameters() {
        let deployment = Deployment {
            parameters: None,
            pull_secret: None,
            patch_context: PatchContext::Gateway,
            ..seed()
        };
        let yaml = format!(
            "{}{}{}",
            deployment.asm_filter_deployment().unwrap(),
            deployment.envoy_filter().unwrap(),
            deployment.wasm_plugin().unwrap()
        );
        let interesting: Vec<&str> = yaml
            .lines()
            .filter(|line| {
                [
                    "parameters",
                    "configuration",
                    "pluginConfig",
                    "pullSecret",
                    "imagePullSecret",
                    "context",
                    "patchContext",
                    "mode",
                ]
                .iter()
                .any(|key| line.trim_start().starts_with(key))
            })
            .collect();
        expect![[r#"
            [
                "    patchContext: GATEWAY",
                "      context: GATEWAY",
            ]
        "#]]
        .assert_debug_eq(&interesting);
    }

    #[test]
    fn wasm_plugin_needs_object_parameters() {
        let deployment = Deployment {
            parameters: Some("[1,2]".to_string()),
            ..seed()
        };
        let error = deployment.wasm_plugin().unwrap_err();
        expect!["--parameters must be a JSON object for the WasmPlugin's pluginConfig (a Struct), got [1,2]"].assert_eq(&format!("{error:#}"));
    }

    #[test]
    fn warns_about_fields_that_look_like_credentials() {
        let parameters = serde_json::json!({
            "name": "x-api-key",
            "value": "v",
            "upstream": {"api_key": "k", "clientSecret": "s", "tokens": [{"bearerToken": "t"}]},
            "password": null,
        });
        expect![[r#"
            [
                "upstream.api_key",
                "upstream.clientSecret",
                "upstream.tokens",
                "upstream.tokens[0].bearerToken",
            ]
        "#]]
        .assert_debug_eq(&super::credential_fields(&parameters));
    }

    #[test]
    fn the_envoy_filter_and_xtask_run_use_one_vm_id() {
        let deployment = seed();
        let asm =
            crate::envoy::AsmFilterDeployment::parse(&deployment.asm_filter_deployment().unwrap())
                .unwrap();
        let bootstrap =
            crate::envoy::bootstrap_from_deployment(&asm, std::path::Path::new("/x.wasm")).unwrap();
        let run_vm_id = bootstrap.to_string();
        let envoy_filter: serde_json::Value =
            serde_yaml_ng::from_str(&deployment.envoy_filter().unwrap()).unwrap();
        let vm_id = envoy_filter["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["config"]["vm_config"]["vm_id"]
            .as_str()
            .unwrap();
        assert!(
            run_vm_id.contains(&format!(r#""vm_id":"{vm_id}""#)),
            "{run_vm_id}"
        );
    }

    /// The files `write` leaves, relative to target/deploy/<name>/, and the first line of each.
    fn written(deployment: &Deployment) -> String {
        let written = deployment.write().unwrap();
        let mut files = Vec::new();
        let mut stack = vec![written.dir.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    let text = std::fs::read_to_string(&path).unwrap();
                    let relative = path
                        .strip_prefix(&written.dir)
                        .unwrap()
                        .display()
                        .to_string();
                    files.push(format!(
                        "{relative}: {}",
                        text.lines().next().unwrap_or_default()
                    ));
                }
            }
        }
        std::fs::remove_dir_all(&written.dir).unwrap();
        files.sort();
        files.join("\n")
    }

    #[test]
    fn writes_one_directory_per_target() {
        let mut deployment = Deployment {
            name: "unit-test-writes-targets".to_string(),
            ..seed()
        };
        expect![[r#"
            README.md: # Deploying unit-test-writes-targets (127.0.0.1:5000/asm/asm-test:v0.1)
            asm/asmfilterdeployment.yaml: apiVersion: istio.alibabacloud.com/v1beta1
            envoy-gateway/envoyextensionpolicy.yaml: apiVersion: gateway.envoyproxy.io/v1alpha1
            istio-hostpath/envoyfilter.yaml: apiVersion: networking.istio.io/v1alpha3
            istio/wasmplugin.yaml: apiVersion: extensions.istio.io/v1alpha1
            workload-patch.yaml: spec:"#]]
        .assert_eq(&written(&deployment));
        deployment.source.in_registry = false;
        deployment.source.image = "target/oci/add-header:v0.1".to_string();
        expect![[r#"
            README.md: # Deploying unit-test-writes-targets (target/oci/add-header:v0.1)
            asm/asmfilterdeployment.yaml.template: # TEMPLATE, not a resource to apply: no registry holds target/oci/add-header:v0.1, so the ASMFilterDeployment naming it
            envoy-gateway/envoyextensionpolicy.yaml.template: # TEMPLATE, not a resource to apply: no registry holds target/oci/add-header:v0.1, so the EnvoyExtensionPolicy naming it
            istio-hostpath/envoyfilter.yaml: apiVersion: networking.istio.io/v1alpha3
            istio/wasmplugin.yaml.template: # TEMPLATE, not a resource to apply: no registry holds target/oci/add-header:v0.1, so the WasmPlugin naming it
            workload-patch.yaml: spec:"#]].assert_eq(&written(&deployment));
        deployment.source.single_layer = true;
        expect![[r#"
            README.md: # Deploying unit-test-writes-targets (target/oci/add-header:v0.1)
            asm/asmfilterdeployment.yaml.template: # TEMPLATE, not a resource to apply: no registry holds target/oci/add-header:v0.1, so the ASMFilterDeployment naming it
            istio-hostpath/envoyfilter.yaml: apiVersion: networking.istio.io/v1alpha3
            workload-patch.yaml: spec:"#]]
        .assert_eq(&written(&deployment));
        deployment.source.in_registry = true;
        deployment.source.single_layer = false;
        deployment.allow_on_headers_stop_iteration = true;
        expect![[r#"
            README.md: # Deploying unit-test-writes-targets (target/oci/add-header:v0.1)
            asm/asmfilterdeployment.yaml: # WARNING: the filter needs Envoy's allow_on_headers_stop_iteration, which the ASMFilterDeployment API cannot
            envoy-gateway/envoyextensionpolicy.yaml: # WARNING: the filter needs Envoy's allow_on_headers_stop_iteration, which the EnvoyExtensionPolicy API cannot
            istio-hostpath/envoyfilter.yaml: apiVersion: networking.istio.io/v1alpha3
            istio/wasmplugin.yaml: # WARNING: the filter needs Envoy's allow_on_headers_stop_iteration, which the WasmPlugin API cannot
            workload-patch.yaml: spec:"#]].assert_eq(&written(&deployment));
    }

    #[test]
    fn reads_the_filters_declared_needs() {
        let needs: Vec<String> = ["add-header", "ext-authz", "json-guard", "local-rate-limit"]
            .iter()
            .map(|filter| format!("{filter}: {:?}", super::filter_needs(filter).unwrap()))
            .collect();
        expect![[r#"
            add-header: FilterNeeds { allow_on_headers_stop_iteration: false, fail_strategy: None }
            ext-authz: FilterNeeds { allow_on_headers_stop_iteration: false, fail_strategy: Some(FailClose) }
            json-guard: FilterNeeds { allow_on_headers_stop_iteration: true, fail_strategy: None }
            local-rate-limit: FilterNeeds { allow_on_headers_stop_iteration: false, fail_strategy: None }"#]].assert_eq(&needs.join("\n"));
    }

    #[test]
    fn declared_needs_reach_the_envoy_filter_and_the_readme() {
        let deployment = Deployment {
            fail_strategy: FailStrategy::FailClose,
            fail_strategy_origin: "the filter's deploy.json",
            allow_on_headers_stop_iteration: true,
            ..seed()
        };
        let envoy_filter = deployment.envoy_filter().unwrap();
        let plugin_config: Vec<&str> = envoy_filter
            .lines()
            .filter(|line| line.contains("fail_open") || line.contains("allow_on_headers"))
            .map(str::trim)
            .collect();
        expect![[r#"
                        fail_open: false
                        allow_on_headers_stop_iteration: true"#]]
        .assert_eq(&plugin_config.join("\n"));
        expect![[r#"
            # Deploying details-v1-wasmfiltersample (127.0.0.1:5000/asm/asm-test:v0.1)

            Pick one directory and apply it alone: two of them would run the filter twice.

            Fail strategy: **FAIL_CLOSE** (from the filter's deploy.json; change it with `--fail-strategy`).

            - FAIL_OPEN: a filter that cannot be fetched, loaded or configured, or that traps, is skipped: traffic bypasses it.
            - FAIL_CLOSE: a filter that cannot be fetched, loaded or configured, or that traps, denies the requests it would see: they fail instead of reaching the workload.

            This filter needs Envoy's `allow_on_headers_stop_iteration: true` (it pauses in its headers callback and must still get the body; filters/<filter>/deploy.json). Set in: `istio-hostpath/envoyfilter.yaml` and `cargo xtask run`. NOT expressible in: the WasmPlugin (no such field; istiod never sets it), the EnvoyExtensionPolicy (no such field in Envoy Gateway's Wasm API), the ASMFilterDeployment (ASM's controller generates the EnvoyFilter without it): through those, requests with a body get no answer. Use `istio-hostpath/`.

            - ASM: `kubectl apply -f asm/` (the ASMFilterDeployment; ASM's node cache pulls the image).
            - Istio: `kubectl apply -f istio/` (a WasmPlugin pinned to sha256 sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa).
            - Envoy Gateway: `kubectl apply -f envoy-gateway/` (an EnvoyExtensionPolicy on Gateway `eg`).
            - Istio with the module on the node (no registry): put the module at `/var/local/lib/wasm-filters/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb.wasm` on every node, then

            ```
            kubectl -n default patch deployment <deployment> --type strategic --patch-file workload-patch.yaml
            kubectl apply -f istio-hostpath/
            ```

              The patch adds a hostPath volume and mounts it into the injected `istio-proxy` container; existing volumes and `sidecar.istio.io/userVolume` annotations stay.
        "#]].assert_eq(&deployment.readme());
    }

    fn check_labels(text: &str, expect: Expect) {
        let actual = match super::parse_labels(text) {
            Ok(labels) => format!("{labels:?}"),
            Err(error) => format!("error: {error:#}"),
        };
        expect.assert_eq(&actual);
    }

    #[test]
    fn parses_labels() {
        check_labels(
            "app=details,version=v1",
            expect![[r#"[("app", "details"), ("version", "v1")]"#]],
        );
        check_labels(" app = details ", expect![[r#"[("app", "details")]"#]]);
        check_labels(
            "app.kubernetes.io/name=x",
            expect![[r#"[("app.kubernetes.io/name", "x")]"#]],
        );
        check_labels(
            "app",
            expect![[r#"error: --labels: "app" is not key=value"#]],
        );
        check_labels(
            "",
            expect![
                "error: --labels is empty: a selector without labels would match every workload in the namespace"
            ],
        );
        check_labels(
            "app=a,app=b",
            expect!["error: --labels: app is given twice"],
        );
        check_labels(
            "app=bad value",
            expect![[r#"error: --labels: "bad value" (for app) is not a valid label value"#]],
        );
    }

    fn check_tag(registry: Option<&str>, tag: Option<&str>, expect: Expect) {
        let actual = match super::resolve_tag(registry, tag, "v0.1") {
            Ok(tag) => tag,
            Err(error) => format!("error: {error:#}"),
        };
        expect.assert_eq(&actual);
    }

    #[test]
    fn resolves_tags() {
        check_tag(None, None, expect!["v0.1"]);
        check_tag(None, Some("v2"), expect!["v2"]);
        check_tag(
            Some("127.0.0.1:5000/asm/asm-test:v0.1"),
            None,
            expect!["v0.1"],
        );
        check_tag(
            Some("127.0.0.1:5000/asm/asm-test"),
            Some("v3"),
            expect!["v3"],
        );
        check_tag(
            Some("127.0.0.1:5000/asm/asm-test:v0.1"),
            Some("v0.1"),
            expect!["v0.1"],
        );
        check_tag(
            Some("127.0.0.1:5000/asm/asm-test:v0.1"),
            Some("v2"),
            expect![
                "error: --registry 127.0.0.1:5000/asm/asm-test:v0.1 has tag v0.1 but --tag says v2: give one"
            ],
        );
        check_tag(
            Some("oci://127.0.0.1:5000/asm/asm-test"),
            None,
            expect![[
                r#"error: in --registry: reference "oci://127.0.0.1:5000/asm/asm-test" has a scheme: write registry/repository:tag (e.g. 127.0.0.1:5000/asm/asm-test:v0.1)"#
            ]],
        );
    }
}

/// Checks the generated resources against their CRDs (xtask/schemas/, verbatim): the
/// openAPIV3Schema with the `jsonschema` crate, made strict about unknown fields as
/// `kubectl --validate=strict` is, and every `x-kubernetes-validations` CEL rule on the path
/// with `cel-interpreter`, plus Kubernetes' `isURL` / `url().getScheme()` library functions,
/// which it lacks.
#[cfg(test)]
mod crd_tests {
    use std::sync::Arc;

    use cel_interpreter::extractors::This;
    use cel_interpreter::{Context, Program};
    use expect_test::{Expect, expect};
    use serde_json::Value;

    struct Crd {
        api_version: String,
        kind: String,
        schema: Value,
    }

    fn crd(file: &str) -> Crd {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("schemas")
            .join(file);
        let text = std::fs::read_to_string(&path).expect("the CRD schema is in xtask/schemas");
        let crd: Value = serde_yaml_ng::from_str(&text).expect("the CRD parses");
        let group = crd["spec"]["group"].as_str().expect("group");
        let version = &crd["spec"]["versions"][0];
        Crd {
            api_version: format!("{group}/{}", version["name"].as_str().expect("version")),
            kind: crd["spec"]["names"]["kind"]
                .as_str()
                .expect("kind")
                .to_string(),
            schema: version["schema"]["openAPIV3Schema"].clone(),
        }
    }

    /// The structural schema as JSON Schema: objects with `properties` reject other fields
    /// (unless they preserve unknown fields), `x-kubernetes-int-or-string` is an anyOf, and
    /// `nullable` admits null.
    fn strict(schema: &Value) -> Value {
        let mut schema = schema.clone();
        if let Value::Object(object) = &mut schema {
            for (key, value) in object.iter_mut() {
                match (key.as_str(), value) {
                    ("properties", Value::Object(properties)) => {
                        for property in properties.values_mut() {
                            *property = strict(property);
                        }
                    }
                    ("anyOf" | "oneOf" | "allOf", Value::Array(options)) => {
                        for option in options {
                            *option = strict(option);
                        }
                    }
                    ("items" | "additionalProperties" | "not", value @ Value::Object(_)) => {
                        *value = strict(value);
                    }
                    _ => {}
                }
            }
            let preserve =
                object.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
            if object.contains_key("properties")
                && !object.contains_key("additionalProperties")
                && !preserve
            {
                object.insert("additionalProperties".into(), Value::Bool(false));
            }
            if object.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
                object.insert(
                    "anyOf".into(),
                    serde_json::json!([{"type": "integer"}, {"type": "string"}]),
                );
            }
            if object.get("nullable") == Some(&Value::Bool(true))
                && let Some(Value::String(kind)) = object.get("type").cloned()
            {
                object.insert("type".into(), serde_json::json!([kind, "null"]));
            }
        }
        schema
    }

    /// Go's `url.Parse` as far as the CRDs' rules need: the scheme, if any.
    fn parse_url(text: &str) -> Option<String> {
        let colon = text.find(':');
        let scheme = colon.map(|at| &text[..at]).filter(|scheme| {
            scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        });
        match scheme {
            Some(scheme) => Some(scheme.to_ascii_lowercase()),
            None if text.starts_with(':') => None,
            // Without a scheme, a colon in the first path segment is an error.
            None if text
                .split('/')
                .next()
                .is_some_and(|first| first.contains(':')) =>
            {
                None
            }
            None if text.chars().any(|c| c.is_control() || c == ' ') => None,
            None => Some(String::new()),
        }
    }

    fn is_url(text: Arc<String>) -> bool {
        parse_url(&text).is_some()
    }

    /// `url(s)` stands for the parsed URL as the string itself; `getScheme` parses it again.
    fn url(text: Arc<String>) -> Arc<String> {
        text
    }

    fn get_scheme(This(text): This<Arc<String>>) -> String {
        parse_url(&text).unwrap_or_default()
    }

    /// Evaluates every CEL rule on the schema nodes `value` reaches (Kubernetes runs a rule
    /// only where its field is present).
    fn cel(value: &Value, schema: &Value, path: &str, errors: &mut Vec<String>) {
        for validation in schema["x-kubernetes-validations"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let rule = validation["rule"].as_str().expect("a rule");
            let program = Program::compile(rule).unwrap_or_else(|error| {
                panic!("{path}: rule {rule:?} does not compile: {error:?}")
            });
            let mut context = Context::default();
            context.add_function("isURL", is_url);
            context.add_function("url", url);
            context.add_function("getScheme", get_scheme);
            context
                .add_variable(
                    "self",
                    cel_interpreter::to_value(value).expect("JSON converts"),
                )
                .expect("self");
            match program.execute(&context) {
                Ok(cel_interpreter::Value::Bool(true)) => {}
                Ok(cel_interpreter::Value::Bool(false)) => errors.push(format!(
                    "{path}: {} (rule: {})",
                    validation["message"].as_str().unwrap_or("invalid"),
                    rule.replace('\n', " ")
                )),
                other => panic!("{path}: rule {rule:?} evaluated to {other:?}"),
            }
        }
        match value {
            Value::Object(object) => {
                for (key, field) in object {
                    let property = schema["properties"]
                        .get(key)
                        .or_else(|| schema.get("additionalProperties").filter(|s| s.is_object()));
                    if let Some(property) = property {
                        cel(field, property, &format!("{path}/{key}"), errors);
                    }
                }
            }
            Value::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    cel(item, &schema["items"], &format!("{path}/{index}"), errors);
                }
            }
            _ => {}
        }
    }

    /// Validates a rendered resource against a CRD; returns one line per problem.
    fn problems(yaml: &str, crd_file: &str) -> String {
        let crd = crd(crd_file);
        let resource: Value = serde_yaml_ng::from_str(yaml).expect("rendered YAML parses");
        let mut errors = Vec::new();
        if resource["apiVersion"] != Value::String(crd.api_version.clone())
            || resource["kind"] != Value::String(crd.kind.clone())
        {
            errors.push(format!("not a {} in {}", crd.kind, crd.api_version));
        }
        for name in ["name", "namespace"] {
            if resource["metadata"][name]
                .as_str()
                .is_none_or(str::is_empty)
            {
                errors.push(format!("metadata.{name} is missing"));
            }
        }
        // Every object has these; the CRDs leave them out of openAPIV3Schema.
        let mut schema = strict(&crd.schema);
        for (field, kind) in [
            ("apiVersion", "string"),
            ("kind", "string"),
            ("metadata", "object"),
        ] {
            schema["properties"][field] = serde_json::json!({ "type": kind });
        }
        let validator = jsonschema::validator_for(&schema).expect("the CRD schema compiles");
        for error in validator.iter_errors(&resource) {
            errors.push(format!("{}: {error}", error.instance_path()));
        }
        cel(&resource, &crd.schema, "", &mut errors);
        errors.join("\n")
    }

    fn check(deployment: super::Deployment, expect: Expect) {
        let actual = format!(
            "envoyfilter: [{}]\nwasmplugin: [{}]\nenvoyextensionpolicy: [{}]\n",
            problems(
                &deployment.envoy_filter().expect("renders"),
                "istio-envoyfilter-crd.yaml"
            ),
            problems(
                &deployment.wasm_plugin().expect("renders"),
                "istio-wasmplugin-crd.yaml"
            ),
            problems(
                &deployment.envoy_extension_policy().expect("renders"),
                "envoy-gateway-envoyextensionpolicy-crd.yaml"
            ),
        );
        expect.assert_eq(&actual);
    }

    #[test]
    fn seed_resources_match_the_crds() {
        check(
            super::tests::seed(),
            expect![[r#"
                envoyfilter: []
                wasmplugin: []
                envoyextensionpolicy: []
            "#]],
        );
    }

    #[test]
    fn resources_without_parameters_or_secret_match_the_crds() {
        let deployment = super::Deployment {
            parameters: None,
            pull_secret: None,
            patch_context: super::PatchContext::SidecarOutbound,
            fail_strategy: super::FailStrategy::FailClose,
            ..super::tests::seed()
        };
        check(
            deployment,
            expect![[r#"
                envoyfilter: []
                wasmplugin: []
                envoyextensionpolicy: []
            "#]],
        );
    }

    fn check_broken(file: &str, edit: impl Fn(&mut Value), expect: Expect) {
        let seed = super::tests::seed();
        let yaml = match file {
            "istio-wasmplugin-crd.yaml" => seed.wasm_plugin(),
            "istio-envoyfilter-crd.yaml" => seed.envoy_filter(),
            _ => seed.envoy_extension_policy(),
        }
        .expect("renders");
        let mut resource: Value = serde_yaml_ng::from_str(&yaml).expect("parses");
        edit(&mut resource);
        let yaml = serde_yaml_ng::to_string(&resource).expect("serializes");
        expect.assert_eq(&problems(&yaml, file));
    }

    #[test]
    fn the_check_rejects_what_the_api_server_would() {
        let wasm_plugin = "istio-wasmplugin-crd.yaml";
        check_broken(
            wasm_plugin,
            |resource| {
                let spec = resource["spec"].as_object_mut().expect("spec");
                let name = spec.remove("pluginName").expect("pluginName");
                spec.insert("pluginname".into(), name);
            },
            expect!["/spec: Additional properties are not allowed ('pluginname' was unexpected)"],
        );
        check_broken(
            wasm_plugin,
            |resource| {
                let digest = resource["spec"]["sha256"]
                    .as_str()
                    .expect("sha256")
                    .to_string();
                resource["spec"]["sha256"] = Value::String(format!("sha256:{digest}"));
            },
            expect![[
                r#"/spec/sha256: "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" does not match "(^$|^[a-f0-9]{64}$)""#
            ]],
        );
        check_broken(
            wasm_plugin,
            |resource| {
                resource["spec"]["targetRefs"] = serde_json::json!([{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "eg"}]);
            },
            expect![
                "/spec: only one of targetRefs or selector can be set (rule: (has(self.selector) ? 1 : 0) + (has(self.targetRef) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1)"
            ],
        );
        check_broken(
            wasm_plugin,
            |resource| {
                resource["spec"]["url"] =
                    Value::String("docker://127.0.0.1:5000/asm/asm-test:v0.1".into());
            },
            expect![[
                r#"/spec/url: url must have schema one of [http, https, file, oci] (rule: isURL(self) ? (url(self).getScheme() in ["", "http", "https", "oci", "file"]) : (isURL("http://" + self) && url("http://" + self).getScheme() in ["", "http", "https", "oci", "file"]))"#
            ]],
        );
        check_broken(
            wasm_plugin,
            |resource| {
                resource["spec"]["match"][0]["mode"] = Value::String("INBOUND".into());
                resource["spec"]["selector"]["matchLabels"]["app"] = Value::String("*".into());
            },
            expect![[r#"
                /spec/match/0/mode: "INBOUND" is not one of "UNDEFINED", "CLIENT" or 2 other candidates
                /spec/selector/matchLabels/app: wildcard not allowed in label value match (rule: !self.contains("*"))"#]],
        );
        let envoy_filter = "istio-envoyfilter-crd.yaml";
        check_broken(
            envoy_filter,
            |resource| {
                resource["spec"]["targetRefs"] = serde_json::json!([{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "eg"}]);
                resource["spec"]["configPatches"][0]["match"]["listener"]["portNumber"] =
                    serde_json::json!(5_000_000_000u64);
            },
            expect![[r#"
                /spec/configPatches/0/match/listener/portNumber: 5000000000 is greater than the maximum of 4294967295
                /spec: only one of targetRefs or workloadSelector can be set (rule: (has(self.workloadSelector) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1)"#]],
        );
        let policy = "envoy-gateway-envoyextensionpolicy-crd.yaml";
        check_broken(
            policy,
            |resource| {
                resource["spec"]["wasm"][0]["code"]["type"] = Value::String("HTTP".into());
                resource["spec"]["targetRefs"][0]["kind"] = Value::String("Service".into());
                resource["spec"]["wasm"][0]["rootId"] = Value::String("x".into());
            },
            expect![[r#"
                /spec/wasm/0: Additional properties are not allowed ('rootId' was unexpected)
                /spec: this policy can only have a targetRefs[*].kind of Gateway/ListenerSet/HTTPRoute/GRPCRoute/TCPRoute/UDPRoute/TLSRoute (rule: has(self.targetRefs) ? self.targetRefs.all(ref, ref.kind in ['Gateway', 'ListenerSet', 'HTTPRoute', 'GRPCRoute', 'UDPRoute', 'TCPRoute', 'TLSRoute']) : true )
                /spec/wasm/0/code: If type is HTTP, http field needs to be set. (rule: self.type == 'HTTP' ? has(self.http) : !has(self.http))
                /spec/wasm/0/code: If type is Image, image field needs to be set. (rule: self.type == 'Image' ? has(self.image) : !has(self.image))"#]],
        );
    }

    /// Every rule of the three CRDs parses with cel-interpreter (functions are resolved when a
    /// rule runs: the tests above run the rules on the fields the resources have).
    #[test]
    fn every_cel_rule_compiles() {
        fn collect(schema: &Value, rules: &mut Vec<String>) {
            match schema {
                Value::Object(object) => {
                    for validation in object
                        .get("x-kubernetes-validations")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        rules.push(validation["rule"].as_str().expect("a rule").to_string());
                    }
                    object.values().for_each(|value| collect(value, rules));
                }
                Value::Array(items) => items.iter().for_each(|item| collect(item, rules)),
                _ => {}
            }
        }
        let mut counts = Vec::new();
        for file in [
            "istio-envoyfilter-crd.yaml",
            "istio-wasmplugin-crd.yaml",
            "envoy-gateway-envoyextensionpolicy-crd.yaml",
        ] {
            let mut rules = Vec::new();
            collect(&crd(file).schema, &mut rules);
            let failing: Vec<&String> = rules
                .iter()
                .filter(|rule| Program::compile(rule).is_err())
                .collect();
            counts.push(format!(
                "{file}: {} rules, not compiling: {failing:?}",
                rules.len()
            ));
        }
        expect![[r#"
            istio-envoyfilter-crd.yaml: 5 rules, not compiling: []
            istio-wasmplugin-crd.yaml: 8 rules, not compiling: []
            envoy-gateway-envoyextensionpolicy-crd.yaml: 53 rules, not compiling: []"#]]
        .assert_eq(&counts.join("\n"));
    }

    #[test]
    fn urls_parse_as_kubernetes_does() {
        let schemes: Vec<_> = [
            "oci://127.0.0.1:5000/asm/asm-test:v0.1",
            "127.0.0.1:5000/asm/asm-test:v0.1",
            "target/oci/add-header:v0.1",
            "docker://x/y",
            "://x",
        ]
        .iter()
        .map(|url| (url, parse_url(url)))
        .collect();
        expect![[r#"
            [
                (
                    "oci://127.0.0.1:5000/asm/asm-test:v0.1",
                    Some(
                        "oci",
                    ),
                ),
                (
                    "127.0.0.1:5000/asm/asm-test:v0.1",
                    None,
                ),
                (
                    "target/oci/add-header:v0.1",
                    Some(
                        "",
                    ),
                ),
                (
                    "docker://x/y",
                    Some(
                        "docker",
                    ),
                ),
                (
                    "://x",
                    None,
                ),
            ]
        "#]]
        .assert_debug_eq(&schemes);
    }
}
