//! `cargo xtask manifests <FILTER>`: the Kubernetes resources that deploy a packaged filter.
//!
//! Writes, under target/deploy/<NAME>/:
//! - `asmfilterdeployment.yaml`: the seed's ASMFilterDeployment (istio.alibabacloud.com/v1beta1),
//!   field names exactly as the seed spells them;
//! - `envoyfilter.yaml`: the Istio EnvoyFilter ASM's controller generates from it (the module
//!   read from `/var/local/lib/wasm-filters/<wasm sha256>.wasm` on the node);
//! - `wasmplugin.yaml`: the plain-Istio equivalent (extensions.istio.io/v1alpha1 WasmPlugin).
//!
//! The digests come from the filter's image layout, target/oci/<FILTER>/ (`cargo xtask package`).

use std::path::PathBuf;

use anyhow::{Context, Result, bail, ensure};
use serde::Serialize;

use crate::oci;
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
    /// The filter; its layout target/oci/<FILTER>/ must exist (`cargo xtask package <FILTER>`).
    pub filter: String,
    #[command(flatten)]
    pub deploy: DeployArgs,
    /// The pushed image, registry/repository[:tag] [default: the local layout, target/oci/<FILTER>:<tag>].
    #[arg(long)]
    pub registry: Option<String>,
    /// Tag used when --registry has none [default: the layout's tag].
    #[arg(long)]
    pub tag: Option<String>,
    /// Print one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> Result<()> {
    let layout_dir = oci::layout_dir(&args.filter);
    let layout = oci::Layout::read(&layout_dir, None)
        .with_context(|| format!("reading the layout of {}", args.filter))?;
    let layout_tag = layout
        .tag
        .clone()
        .unwrap_or_else(|| oci::DEFAULT_TAG.to_string());
    let tag = resolve_tag(args.registry.as_deref(), args.tag.as_deref(), &layout_tag)?;
    let image = match &args.registry {
        Some(registry) => registry_image(registry, &tag)?,
        None => oci::layout_reference(&layout_dir, &tag),
    };
    let deployment = Deployment::new(&args.filter, &args.deploy, image, &layout)?;
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

/// Everything the three resources are made from.
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
    /// registry/repository:tag, or the local layout's reference.
    pub image: String,
    pub manifest_digest: String,
    pub wasm_digest: String,
}

/// The files written.
#[derive(Serialize, Debug)]
pub struct Written {
    pub dir: PathBuf,
    pub asmfilterdeployment: PathBuf,
    pub envoyfilter: PathBuf,
    pub wasmplugin: PathBuf,
    /// The pod-template annotations ASM's controller adds to the workload.
    pub workload_patch: PathBuf,
}

impl Written {
    pub fn print(&self) {
        println!(
            "asmfilterdeployment\t{}",
            self.asmfilterdeployment.display()
        );
        println!("envoyfilter\t{}", self.envoyfilter.display());
        println!("wasmplugin\t{}", self.wasmplugin.display());
        println!("workload_patch\t{}", self.workload_patch.display());
    }
}

impl DeployArgs {
    /// Checks the options (before any slow step) and returns the resources' name and the
    /// workload labels, with their defaults for `filter` filled in.
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
        if let Some(parameters) = &self.parameters {
            serde_json::from_str::<serde_json::Value>(parameters)
                .with_context(|| format!("--parameters is not JSON: {parameters}"))?;
        }
        let labels = match &self.labels {
            Some(labels) => parse_labels(labels)?,
            None => vec![("app".to_string(), filter.to_string())],
        };
        Ok((name, labels))
    }
}

impl Deployment {
    /// Checks the options and takes the digests from a layout.
    pub fn new(
        filter: &str,
        args: &DeployArgs,
        image: String,
        layout: &oci::Layout,
    ) -> Result<Deployment> {
        let (name, labels) = args.check(filter)?;
        Ok(Deployment {
            name,
            namespace: args.namespace.clone(),
            labels,
            root_id: args.root_id.clone(),
            parameters: args.parameters.clone(),
            pull_secret: args.pull_secret.clone(),
            patch_context: args.patch_context,
            image,
            manifest_digest: layout.manifest_digest.clone(),
            wasm_digest: layout.manifest.wasm_layer()?.digest.clone(),
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
                    image: &self.image,
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
        let wasm_hex = self.wasm_digest.trim_start_matches("sha256:");
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
                                        vm_id: self.id(),
                                        runtime: "envoy.wasm.runtime.v8",
                                        code: Code { local: LocalCode { filename: format!("{WASM_FILTERS_DIR}/{wasm_hex}.wasm") } },
                                    },
                                    configuration: self.parameters.as_deref().map(|value| StringValue {
                                        type_url: "type.googleapis.com/google.protobuf.StringValue",
                                        value,
                                    }),
                                },
                            },
                        },
                    },
                }],
            },
        };
        serde_yaml_ng::to_string(&resource).context("serializing the EnvoyFilter")
    }

    /// The Istio WasmPlugin equivalent.
    pub fn wasm_plugin(&self) -> Result<String> {
        let plugin_config = match &self.parameters {
            None => None,
            Some(parameters) => match serde_json::from_str::<serde_json::Value>(parameters)? {
                object @ serde_json::Value::Object(_) => Some(object),
                _ => bail!(
                    "--parameters must be a JSON object for the WasmPlugin's pluginConfig (a Struct), got {parameters}"
                ),
            },
        };
        let resource = WasmPlugin {
            api_version: "extensions.istio.io/v1alpha1",
            kind: "WasmPlugin",
            metadata: self.metadata(),
            spec: WasmPluginSpec {
                selector: Selector {
                    match_labels: Labels(&self.labels),
                },
                url: format!("oci://{}", self.image),
                sha256: self.manifest_digest.trim_start_matches("sha256:"),
                image_pull_secret: self.pull_secret.as_deref(),
                plugin_name: &self.root_id,
                plugin_config,
                r#match: vec![TrafficSelector {
                    mode: self.patch_context.wasm_plugin_mode(),
                }],
            },
        };
        serde_yaml_ng::to_string(&resource).context("serializing the WasmPlugin")
    }

    /// The patch ASM's controller applies to the workload so its sidecar mounts the node's
    /// module directory (the seed's `sidecar.istio.io/userVolume` annotations); for
    /// `kubectl patch deployment <name> --patch-file workload-patch.yaml`.
    pub fn workload_patch(&self) -> Result<String> {
        let volume = serde_json::json!([{
            "name": "wasmfilters-dir",
            "hostPath": { "path": WASM_FILTERS_DIR },
        }]);
        let mount = serde_json::json!([{
            "mountPath": WASM_FILTERS_DIR,
            "name": "wasmfilters-dir",
        }]);
        let patch = serde_json::json!({
            "spec": { "template": { "metadata": { "annotations": {
                "sidecar.istio.io/userVolume": volume.to_string(),
                "sidecar.istio.io/userVolumeMount": mount.to_string(),
            } } } }
        });
        serde_yaml_ng::to_string(&patch).context("serializing the workload patch")
    }

    /// Renders every file (so a bad option fails before anything is written) and writes them
    /// under target/deploy/<name>/.
    pub fn write(&self) -> Result<Written> {
        let rendered = [
            self.asm_filter_deployment()?,
            self.envoy_filter()?,
            self.wasm_plugin()?,
            self.workload_patch()?,
        ];
        let dir = deploy_dir(&self.name);
        let written = Written {
            asmfilterdeployment: dir.join("asmfilterdeployment.yaml"),
            envoyfilter: dir.join("envoyfilter.yaml"),
            wasmplugin: dir.join("wasmplugin.yaml"),
            workload_patch: dir.join("workload-patch.yaml"),
            dir,
        };
        for (path, yaml) in [
            &written.asmfilterdeployment,
            &written.envoyfilter,
            &written.wasmplugin,
            &written.workload_patch,
        ]
        .into_iter()
        .zip(&rendered)
        {
            util::write_atomic(path, yaml.as_bytes())?;
        }
        eprintln!("wrote {}", util::relative(&written.dir));
        Ok(written)
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
    #[serde(skip_serializing_if = "Option::is_none")]
    image_pull_secret: Option<&'a str>,
    plugin_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    plugin_config: Option<serde_json::Value>,
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

    use super::{Deployment, PatchContext};

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
            image: "127.0.0.1:5000/asm/asm-test:v0.1".to_string(),
            manifest_digest: format!("sha256:{}", "a".repeat(64)),
            wasm_digest: format!("sha256:{}", "b".repeat(64)),
        }
    }

    fn check(deployment: Deployment, expect: Expect) {
        let render = |result: anyhow::Result<String>| {
            result.unwrap_or_else(|error| format!("error: {error:#}\n"))
        };
        let actual = format!(
            "{}---\n{}---\n{}---\n{}",
            render(deployment.asm_filter_deployment()),
            render(deployment.envoy_filter()),
            render(deployment.wasm_plugin()),
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
                              vm_id: details-v1-wasmfiltersample.default
                              runtime: envoy.wasm.runtime.v8
                              code:
                                local:
                                  filename: /var/local/lib/wasm-filters/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb.wasm
                            configuration:
                              '@type': type.googleapis.com/google.protobuf.StringValue
                              value: '{"name":"hello","value":"hello details"}'
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
                  imagePullSecret: asmwasm-cache
                  pluginName: my_root_id
                  pluginConfig:
                    name: hello
                    value: hello details
                  match:
                  - mode: SERVER
                ---
                spec:
                  template:
                    metadata:
                      annotations:
                        sidecar.istio.io/userVolume: '[{"hostPath":{"path":"/var/local/lib/wasm-filters"},"name":"wasmfilters-dir"}]'
                        sidecar.istio.io/userVolumeMount: '[{"mountPath":"/var/local/lib/wasm-filters","name":"wasmfilters-dir"}]'
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

/// Checks the generated EnvoyFilter and WasmPlugin against Istio's CRD schemas
/// (xtask/schemas/, verbatim from istio/istio), rejecting unknown fields as
/// `kubectl --validate=strict` does. CEL rules (`x-kubernetes-validations`) are not evaluated
/// here; the few that matter are asserted directly.
#[cfg(test)]
mod crd_tests {
    use expect_test::{Expect, expect};
    use serde_json::Value;

    fn crd_schema(file: &str) -> (String, String, Value) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("schemas")
            .join(file);
        let text = std::fs::read_to_string(&path).expect("the CRD schema is in xtask/schemas");
        let crd: Value = serde_yaml_ng::from_str(&text).expect("the CRD parses");
        let group = crd["spec"]["group"].as_str().expect("group").to_string();
        let kind = crd["spec"]["names"]["kind"]
            .as_str()
            .expect("kind")
            .to_string();
        let version = &crd["spec"]["versions"][0];
        let api_version = format!("{group}/{}", version["name"].as_str().expect("version"));
        (
            api_version,
            kind,
            version["schema"]["openAPIV3Schema"].clone(),
        )
    }

    /// A structural OpenAPI v3 check: types, properties, required, enums, lengths, patterns,
    /// ranges, anyOf/oneOf/not, preserve-unknown-fields, int-or-string.
    fn validate(value: &Value, schema: &Value, path: &str, errors: &mut Vec<String>) {
        if value.is_null() && schema["nullable"] == Value::Bool(true) {
            return;
        }
        if let Some(any_of) = schema["anyOf"].as_array()
            && !any_of.iter().any(|option| passes(value, option))
        {
            errors.push(format!("{path}: matches none of anyOf"));
        }
        if let Some(one_of) = schema["oneOf"].as_array() {
            let passing = one_of.iter().filter(|option| passes(value, option)).count();
            if passing != 1 {
                errors.push(format!(
                    "{path}: matches {passing} of oneOf, not exactly one"
                ));
            }
        }
        if schema.get("not").is_some() && passes(value, &schema["not"]) {
            errors.push(format!("{path}: matches a `not` schema"));
        }
        if schema["x-kubernetes-int-or-string"] == Value::Bool(true) {
            if !(value.is_i64() || value.is_u64() || value.is_string()) {
                errors.push(format!("{path}: not an integer or a string"));
            }
            return;
        }
        let preserve_unknown = schema["x-kubernetes-preserve-unknown-fields"] == Value::Bool(true);
        match schema["type"].as_str() {
            Some("object") => {
                let Some(object) = value.as_object() else {
                    return errors.push(format!("{path}: not an object"));
                };
                for required in schema["required"].as_array().into_iter().flatten() {
                    let required = required.as_str().expect("required names are strings");
                    if !object.contains_key(required) {
                        errors.push(format!("{path}: missing required field {required}"));
                    }
                }
                if let Some(max) = schema["maxProperties"].as_u64()
                    && object.len() as u64 > max
                {
                    errors.push(format!("{path}: more than {max} properties"));
                }
                for (key, field) in object {
                    let field_path = format!("{path}.{key}");
                    if let Some(property) = schema["properties"].get(key) {
                        validate(field, property, &field_path, errors);
                    } else if schema["additionalProperties"].is_object() {
                        validate(field, &schema["additionalProperties"], &field_path, errors);
                    } else if !preserve_unknown {
                        errors.push(format!("{field_path}: unknown field"));
                    }
                }
            }
            Some("array") => {
                let Some(items) = value.as_array() else {
                    return errors.push(format!("{path}: not an array"));
                };
                if let Some(max) = schema["maxItems"].as_u64()
                    && items.len() as u64 > max
                {
                    errors.push(format!("{path}: more than {max} items"));
                }
                for (index, item) in items.iter().enumerate() {
                    validate(item, &schema["items"], &format!("{path}[{index}]"), errors);
                }
            }
            Some("string") => {
                let Some(text) = value.as_str() else {
                    return errors.push(format!("{path}: not a string"));
                };
                if let Some(allowed) = schema["enum"].as_array()
                    && !allowed.iter().any(|option| option.as_str() == Some(text))
                {
                    errors.push(format!("{path}: {text:?} is not one of {allowed:?}"));
                }
                let length = text.chars().count() as u64;
                if schema["minLength"].as_u64().is_some_and(|min| length < min) {
                    errors.push(format!("{path}: shorter than minLength"));
                }
                if schema["maxLength"].as_u64().is_some_and(|max| length > max) {
                    errors.push(format!("{path}: longer than maxLength"));
                }
                if let Some(pattern) = schema["pattern"].as_str() {
                    let regex = regex::Regex::new(pattern).expect("CRD patterns are valid regexes");
                    if !regex.is_match(text) {
                        errors.push(format!("{path}: {text:?} does not match {pattern}"));
                    }
                }
            }
            Some("integer") if !(value.is_i64() || value.is_u64()) => {
                errors.push(format!("{path}: not an integer"));
            }
            Some("number") if !value.is_number() => errors.push(format!("{path}: not a number")),
            Some("boolean") if !value.is_boolean() => errors.push(format!("{path}: not a boolean")),
            Some("integer" | "number" | "boolean") => {}
            Some(other) => errors.push(format!("{path}: unsupported schema type {other}")),
            None => {}
        }
    }

    fn passes(value: &Value, schema: &Value) -> bool {
        let mut errors = Vec::new();
        validate(value, schema, "", &mut errors);
        errors.is_empty()
    }

    /// Validates a rendered resource against a CRD; returns one line per problem.
    fn problems(yaml: &str, crd_file: &str) -> String {
        let (api_version, kind, schema) = crd_schema(crd_file);
        let resource: Value = serde_yaml_ng::from_str(yaml).expect("rendered YAML parses");
        let mut errors = Vec::new();
        if resource["apiVersion"] != Value::String(api_version.clone())
            || resource["kind"] != Value::String(kind.clone())
        {
            errors.push(format!("not a {kind} in {api_version}"));
        }
        let Some(object) = resource.as_object() else {
            return "not an object".to_string();
        };
        for (key, field) in object {
            match key.as_str() {
                "apiVersion" | "kind" => {}
                "metadata" => {
                    for name in ["name", "namespace"] {
                        if field[name].as_str().is_none_or(str::is_empty) {
                            errors.push(format!("metadata.{name} is missing"));
                        }
                    }
                }
                _ => match schema["properties"].get(key) {
                    Some(property) => validate(field, property, key, &mut errors),
                    None => errors.push(format!("{key}: unknown field")),
                },
            }
        }
        errors.join("\n")
    }

    fn check(deployment: super::Deployment, expect: Expect) {
        let envoy_filter = deployment.envoy_filter().expect("renders");
        let wasm_plugin = deployment.wasm_plugin().expect("renders");
        let mut actual = format!(
            "envoyfilter: [{}]\nwasmplugin: [{}]\n",
            problems(&envoy_filter, "istio-envoyfilter-crd.yaml"),
            problems(&wasm_plugin, "istio-wasmplugin-crd.yaml"),
        );
        // The CEL rule on WasmPlugin.url: the scheme must be one Istio fetches from.
        let wasm_plugin: Value = serde_yaml_ng::from_str(&wasm_plugin).expect("parses");
        let url = wasm_plugin["spec"]["url"].as_str().unwrap_or_default();
        if !["oci://", "http://", "https://", "file://"]
            .iter()
            .any(|scheme| url.starts_with(scheme))
        {
            actual.push_str(&format!("url {url:?} has no scheme Istio fetches from\n"));
        }
        expect.assert_eq(&actual);
    }

    #[test]
    fn seed_resources_match_istio_crds() {
        check(
            super::tests::seed(),
            expect![[r#"
                envoyfilter: [spec.configPatches[0].match: matches 4 of oneOf, not exactly one]
                wasmplugin: []
            "#]],
        );
    }

    #[test]
    fn resources_without_parameters_or_secret_match_istio_crds() {
        let deployment = super::Deployment {
            parameters: None,
            pull_secret: None,
            patch_context: super::PatchContext::SidecarOutbound,
            image: "target/oci/add-header:v0.1".to_string(),
            ..super::tests::seed()
        };
        check(
            deployment,
            expect![[r#"
                envoyfilter: [spec.configPatches[0].match: matches 4 of oneOf, not exactly one]
                wasmplugin: []
            "#]],
        );
    }

    #[test]
    fn the_check_rejects_unknown_fields_and_bad_values() {
        let wasm_plugin = super::tests::seed().wasm_plugin().expect("renders");
        let broken = wasm_plugin
            .replace("pluginName:", "pluginNmae:")
            .replace("mode: SERVER", "mode: INBOUND")
            .replace("sha256: aaaa", "sha256: AAAA");
        expect![[r#"
            spec.match[0].mode: "INBOUND" is not one of [String("UNDEFINED"), String("CLIENT"), String("SERVER"), String("CLIENT_AND_SERVER")]
            spec.pluginNmae: unknown field
            spec.sha256: "AAAAaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" does not match (^$|^[a-f0-9]{64}$)"#]].assert_eq(&problems(&broken, "istio-wasmplugin-crd.yaml"));
    }
}
