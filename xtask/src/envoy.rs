//! Running filters in a real Envoy: the bootstrap, a process guard, and `cargo xtask run`.
//!
//! The bootstrap gives Envoy what an ASM sidecar gets from an ASMFilterDeployment: one HTTP
//! listener whose filter chain is the Wasm filter (the deployment's rootID and parameters, a
//! local `.wasm` file as the code) followed by the router. The route answers by itself
//! (`direct_response`), so no upstream is needed and the response still runs through the
//! filter's response callbacks. Ports are never picked in advance: the admin and the listener
//! bind port 0 and [`Envoy::start`] reads the real ones from the admin API.
//!
//! xtask's integration tests compile this file too (tests/it/main.rs includes it with `#[path]`),
//! so it uses nothing from the rest of xtask but `crate::util`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::util::{self, ChildGuard};

/// How long Envoy may take to load its config and open its listener (about 0.2 s here).
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The API version and kind of the resource `cargo xtask publish` writes, as in the seed.
const DEPLOYMENT_API_VERSION: &str = "istio.alibabacloud.com/v1beta1";
const DEPLOYMENT_KIND: &str = "ASMFilterDeployment";

#[derive(clap::Args)]
pub struct RunArgs {
    /// The filter to run (a crate under filters/).
    filter: String,
    /// The ASMFilterDeployment whose rootID and parameters configure the filter
    /// [default: target/deploy/<FILTER>/asm/asmfilterdeployment.yaml, else the `.yaml.template`
    /// written when no registry holds the image].
    #[arg(long)]
    deployment: Option<PathBuf>,
    /// The module Envoy loads as a local file [default: target/filters/<FILTER>.wasm].
    #[arg(long)]
    wasm: Option<PathBuf>,
    /// Send one GET to the listener, print the response's status line and headers, and stop.
    #[arg(long)]
    once: bool,
    /// Where the bootstrap and Envoy's log are written [default: target/run/<FILTER>].
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

/// `cargo xtask run`: Envoy with one filter, until Ctrl-C (or one request with `--once`).
pub fn run(args: RunArgs) -> Result<()> {
    let filter = &args.filter;
    let wasm = args.wasm.unwrap_or_else(|| util::filter_wasm(filter));
    if !wasm.is_file() {
        bail!(
            "{} not found: run `cargo xtask build {filter}`",
            wasm.display()
        );
    }
    let deployment_path = args.deployment.unwrap_or_else(|| {
        let asm = util::target_dir().join("deploy").join(filter).join("asm");
        let real = asm.join("asmfilterdeployment.yaml");
        if real.is_file() {
            real
        } else {
            asm.join("asmfilterdeployment.yaml.template")
        }
    });
    if !deployment_path.is_file() {
        bail!(
            "{} not found: run `cargo xtask publish {filter}` (or pass --deployment)",
            deployment_path.display()
        );
    }
    let deployment = AsmFilterDeployment::read(&deployment_path)?;
    let envoy_binary = util::tool("envoy")?;
    let work_dir = args
        .work_dir
        .unwrap_or_else(|| util::target_dir().join("run").join(filter));

    eprintln!("{}", deployment.describe());
    let mut bootstrap = bootstrap_from_deployment(&deployment, &wasm)?;
    if needs_stop_iteration(filter)? {
        eprintln!("allow_on_headers_stop_iteration: true (filters/{filter}/deploy.json)");
        allow_on_headers_stop_iteration(&mut bootstrap);
    }
    let mut envoy = Envoy::start(&envoy_binary, &bootstrap, &work_dir)?;
    let url = envoy.listener_url();
    if args.once {
        let response = get(&url)?;
        print!("{}", response.head());
        return Ok(());
    }
    println!("{url}");
    eprintln!(
        "envoy is ready after {:.2}s; try: curl -i {url}\n\
         admin: http://{}  log: {}\n\
         Ctrl-C stops it",
        envoy.ready_after().as_secs_f64(),
        envoy.admin_address(),
        envoy.log_path().display(),
    );
    let status = envoy.wait()?;
    if status.success() {
        eprintln!("envoy stopped");
        return Ok(());
    }
    bail!(
        "envoy exited ({status}); its log is {}",
        envoy.log_path().display()
    )
}

/// An ASMFilterDeployment (istio.alibabacloud.com/v1beta1) with the seed's field names.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AsmFilterDeployment {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: DeploymentSpec,
}

/// `metadata` of an ASMFilterDeployment.
#[derive(Debug, Deserialize)]
pub struct Metadata {
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
}

/// `spec` of an ASMFilterDeployment: which pods, which filter.
#[derive(Debug, Deserialize)]
pub struct DeploymentSpec {
    pub workload: Workload,
    pub filter: FilterSpec,
}

/// `spec.workload`: the pods whose sidecars get the filter.
#[derive(Debug, Deserialize)]
pub struct Workload {
    pub kind: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// `spec.filter`: the artifact and how the plugin is configured.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FilterSpec {
    #[serde(default)]
    pub patch_context: Option<String>,
    /// The plugin configuration, a JSON string handed to `on_configure` as is.
    #[serde(default)]
    pub parameters: String,
    pub image: String,
    #[serde(default)]
    pub image_pull_options: Option<ImagePullOptions>,
    #[serde(rename = "rootID")]
    pub root_id: String,
    pub id: String,
}

/// `spec.filter.imagePullOptions`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImagePullOptions {
    pub pull_secret: String,
}

impl AsmFilterDeployment {
    /// Reads and checks a YAML file such as `target/deploy/<name>/asm/asmfilterdeployment.yaml`.
    pub fn read(path: &Path) -> Result<AsmFilterDeployment> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        AsmFilterDeployment::parse(&text).with_context(|| format!("reading {}", path.display()))
    }

    /// Parses an ASMFilterDeployment from YAML; another kind or API version is an error.
    pub fn parse(yaml: &str) -> Result<AsmFilterDeployment> {
        let deployment: AsmFilterDeployment =
            serde_yaml_ng::from_str(yaml).context("not an ASMFilterDeployment")?;
        if deployment.kind != DEPLOYMENT_KIND || deployment.api_version != DEPLOYMENT_API_VERSION {
            bail!(
                "expected kind {DEPLOYMENT_KIND} in {DEPLOYMENT_API_VERSION}, found kind {} in {}",
                deployment.kind,
                deployment.api_version
            );
        }
        Ok(deployment)
    }

    /// One line for humans: which resource, which image, which pods.
    pub fn describe(&self) -> String {
        let filter = &self.spec.filter;
        let labels: Vec<String> = self
            .spec
            .workload
            .labels
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        let pull_secret = filter
            .image_pull_options
            .as_ref()
            .map_or("none", |options| options.pull_secret.as_str());
        format!(
            "{DEPLOYMENT_KIND} {}/{} (id {}): image {} (pull secret {pull_secret}), rootID {}, \
             {} with labels {}, patch context {}",
            self.metadata.namespace.as_deref().unwrap_or("default"),
            self.metadata.name,
            filter.id,
            filter.image,
            filter.root_id,
            self.spec.workload.kind,
            labels.join(","),
            filter.patch_context.as_deref().unwrap_or("SIDECAR_INBOUND"),
        )
    }
}

/// One Wasm plugin in the bootstrap: what `envoy.extensions.filters.http.wasm.v3.Wasm` needs.
#[derive(Debug, Clone, Copy)]
pub struct Plugin<'a> {
    /// The plugin's name in Envoy's logs and stats.
    pub name: &'a str,
    /// The root context the configuration goes to (the filter reads `plugin_root_id`).
    pub root_id: &'a str,
    /// Plugins with the same vm_id and code share one VM.
    pub vm_id: &'a str,
    /// The `.wasm` file, loaded as a local file.
    pub wasm: &'a Path,
    /// The plugin configuration (a JSON string for add-header), passed as a StringValue.
    pub configuration: &'a str,
}

/// The vm_id of the plugin a deployment named `name` describes: this bootstrap and the
/// generated EnvoyFilter use the same, so both share or separate VMs alike.
pub fn vm_id(name: &str) -> &str {
    name
}

/// The plugin an ASMFilterDeployment describes: name = `spec.filter.id`, vm_id =
/// `metadata.name`, rootID and parameters as they are, the code from `wasm` (made absolute).
pub fn bootstrap_from_deployment(deployment: &AsmFilterDeployment, wasm: &Path) -> Result<Value> {
    let wasm =
        std::path::absolute(wasm).with_context(|| format!("resolving {}", wasm.display()))?;
    let filter = &deployment.spec.filter;
    Ok(bootstrap(&[Plugin {
        name: &filter.id,
        root_id: &filter.root_id,
        vm_id: vm_id(&deployment.metadata.name),
        wasm: &wasm,
        configuration: &filter.parameters,
    }]))
}

/// Whether filters/<filter>/deploy.json asks for `allow_on_headers_stop_iteration` (the file
/// `manifests::FilterNeeds` describes and checks in full).
fn needs_stop_iteration(filter: &str) -> Result<bool> {
    let path = util::project_root()
        .join("filters")
        .join(filter)
        .join("deploy.json");
    let needs: Value = match std::fs::read_to_string(&path) {
        Ok(text) => {
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    };
    Ok(needs["allow_on_headers_stop_iteration"] == true)
}

/// Sets `allow_on_headers_stop_iteration: true` on every Wasm filter of a [`bootstrap`], for a
/// filter that pauses in its headers callback and still needs the body.
pub fn allow_on_headers_stop_iteration(bootstrap: &mut Value) {
    let filters = &mut bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"]
        [0]["typed_config"]["http_filters"];
    for filter in filters.as_array_mut().into_iter().flatten() {
        if filter["name"] == "envoy.filters.http.wasm" {
            filter["typed_config"]["config"]["allow_on_headers_stop_iteration"] = json!(true);
        }
    }
}

/// An Envoy bootstrap: admin and one listener on 127.0.0.1 port 0, the HTTP connection manager
/// with the Wasm filters in order then the router, and a route that answers 200 by itself.
pub fn bootstrap(plugins: &[Plugin<'_>]) -> Value {
    let mut http_filters: Vec<Value> = plugins.iter().map(wasm_filter).collect();
    http_filters.push(router());
    json!({
        "admin": { "address": loopback_port_zero() },
        "static_resources": {
            "listeners": [{
                "name": "filterkit",
                "address": loopback_port_zero(),
                "filter_chains": [{
                    "filters": [{
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                            "stat_prefix": "filterkit",
                            "route_config": {
                                "virtual_hosts": [{
                                    "name": "direct",
                                    "domains": ["*"],
                                    "routes": [{
                                        "match": { "prefix": "/" },
                                        "direct_response": {
                                            "status": 200,
                                            "body": { "inline_string": "answered by envoy\n" },
                                        },
                                    }],
                                }],
                            },
                            "http_filters": http_filters,
                        },
                    }],
                }],
            }],
        },
    })
}

fn wasm_filter(plugin: &Plugin<'_>) -> Value {
    json!({
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": plugin.name,
                "root_id": plugin.root_id,
                "vm_config": {
                    "vm_id": plugin.vm_id,
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": { "local": { "filename": plugin.wasm.display().to_string() } },
                },
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": plugin.configuration,
                },
            },
        },
    })
}

fn router() -> Value {
    json!({
        "name": "envoy.filters.http.router",
        "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" },
    })
}

fn loopback_port_zero() -> Value {
    json!({ "socket_address": { "address": "127.0.0.1", "port_value": 0 } })
}

/// A running Envoy whose listener is open; dropping it kills Envoy.
pub struct Envoy {
    process: ChildGuard,
    work_dir: PathBuf,
    admin: SocketAddr,
    listener: SocketAddr,
    ready_after: Duration,
}

/// Envoy exited before its listener was ready, typically because it refused the config
/// (a plugin whose `on_configure` returned false makes Envoy 1.40 exit with status 1).
#[derive(Debug)]
pub struct Exited {
    /// Envoy's exit status.
    pub status: ExitStatus,
    /// Everything Envoy logged.
    pub log: String,
}

impl fmt::Display for Exited {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "envoy exited ({}) before its listener was ready; its log ends with:{}",
            self.status,
            log_tail(&self.log)
        )
    }
}

/// The last lines of a log, indented, each on its own line.
fn log_tail(log: &str) -> String {
    const TAIL_LINES: usize = 12;
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..]
        .iter()
        .map(|line| format!("\n  {line}"))
        .collect()
}

impl std::error::Error for Exited {}

impl Envoy {
    /// Writes `bootstrap` into `work_dir`, starts `binary` on it (log in `work_dir/envoy.log`)
    /// and waits until the listener's port is known. An Envoy that exits first gives an
    /// [`Exited`] error (reach it with `downcast_ref`).
    pub fn start(binary: &Path, bootstrap: &Value, work_dir: &Path) -> Result<Envoy> {
        Envoy::start_with_workers(binary, bootstrap, work_dir, 1)
    }

    /// [`Envoy::start`] with `workers` worker threads (`--concurrency`).
    pub fn start_with_workers(
        binary: &Path,
        bootstrap: &Value,
        work_dir: &Path,
        workers: u32,
    ) -> Result<Envoy> {
        Envoy::start_under(&[], READY_TIMEOUT, binary, bootstrap, work_dir, workers)
    }

    /// [`Envoy::start_with_workers`] with Envoy's command line after `wrapper` (a program and
    /// its arguments, such as `valgrind --tool=callgrind`; empty runs Envoy itself), waiting
    /// up to `ready_timeout` for the listener. The process [`Envoy::pid`] names is the
    /// wrapper's, which for valgrind is Envoy's own.
    pub fn start_under(
        wrapper: &[OsString],
        ready_timeout: Duration,
        binary: &Path,
        bootstrap: &Value,
        work_dir: &Path,
        workers: u32,
    ) -> Result<Envoy> {
        let started = Instant::now();
        std::fs::create_dir_all(work_dir)
            .with_context(|| format!("creating {}", work_dir.display()))?;
        // JSON, not YAML: Envoy reads a `.yaml` bootstrap with YAML 1.1 scalars, so a string
        // such as a plugin configuration `n` or `yes` would arrive as a boolean.
        let config_path = work_dir.join("envoy.json");
        let config =
            serde_json::to_string_pretty(bootstrap).context("writing the bootstrap as JSON")?;
        std::fs::write(&config_path, config)
            .with_context(|| format!("writing {}", config_path.display()))?;
        let admin_path = work_dir.join("admin-address");
        // A file left by an earlier run would name a dead admin.
        let _ = std::fs::remove_file(&admin_path);
        let log_path = work_dir.join("envoy.log");
        let log =
            File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
        let log_for_stdout = log
            .try_clone()
            .with_context(|| format!("opening {}", log_path.display()))?;

        // Several Envoys run at once (tests, a developer's `run`): a dynamic base id keeps them
        // apart, and without hot restart Envoy leaves no shared-memory file in /dev/shm behind.
        let mut command = match wrapper.split_first() {
            Some((program, arguments)) => {
                let mut command = Command::new(program);
                command.args(arguments).arg(binary);
                command
            }
            None => Command::new(binary),
        };
        let child = command
            .args(["--use-dynamic-base-id", "--disable-hot-restart"])
            .arg("--admin-address-path")
            .arg(&admin_path)
            .arg("-c")
            .arg(&config_path)
            .args(["--log-level", "info", "--concurrency"])
            .arg(workers.to_string())
            .stdin(Stdio::null())
            .stdout(log_for_stdout)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", util::show(&command)))?;
        let mut process = ChildGuard(child);

        let deadline = started + ready_timeout;
        let what = format!(
            "envoy's listener (admin address file {})",
            admin_path.display()
        );
        let ready = util::poll_until(deadline, &what, || {
            if let Some(status) = process.0.try_wait().context("waiting for envoy")? {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(Exited { status, log }.into());
            }
            let Some(admin) = read_admin_address(&admin_path) else {
                return Ok(None);
            };
            // The listener is bound before Envoy is initialized, and accepts only once the
            // server is live (a remote Wasm module, for one, is fetched in between).
            if !is_live(admin) {
                return Ok(None);
            }
            Ok(listener_address(admin).map(|listener| (admin, listener)))
        });
        let (admin, listener) = match ready {
            Ok(addresses) => addresses,
            Err(error) if error.is::<Exited>() => {
                return Err(error.context(format!("starting envoy on {}", config_path.display())));
            }
            // A timeout: Envoy still runs (and is killed on return), its log tells why.
            Err(error) => {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(error.context(format!(
                    "starting envoy on {}; its log ends with:{}",
                    config_path.display(),
                    log_tail(&log)
                )));
            }
        };

        Ok(Envoy {
            process,
            work_dir: work_dir.to_path_buf(),
            admin,
            listener,
            ready_after: started.elapsed(),
        })
    }

    /// `http://127.0.0.1:<port>`: the listener with the filter.
    pub fn listener_url(&self) -> String {
        format!("http://{}", self.listener)
    }

    /// The listener's address.
    pub fn listener(&self) -> SocketAddr {
        self.listener
    }

    /// The admin API's address.
    pub fn admin_address(&self) -> SocketAddr {
        self.admin
    }

    /// Envoy's process id, for reading its memory and CPU time under /proc (`cargo xtask bench`).
    pub fn pid(&self) -> u32 {
        self.process.0.id()
    }

    /// From spawning Envoy to knowing its listener's port.
    pub fn ready_after(&self) -> Duration {
        self.ready_after
    }

    /// Envoy's stdout and stderr.
    pub fn log_path(&self) -> PathBuf {
        self.work_dir.join("envoy.log")
    }

    /// Envoy's exit status if it has exited, without waiting.
    #[allow(
        dead_code,
        reason = "used by `cargo xtask bench`; the end-to-end tests compile this file too"
    )]
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        self.process.0.try_wait().context("waiting for envoy")
    }

    /// Blocks until Envoy exits (Ctrl-C reaches it too: it is in the terminal's process group).
    pub fn wait(&mut self) -> Result<ExitStatus> {
        self.process.0.wait().context("waiting for envoy")
    }
}

fn read_admin_address(path: &Path) -> Option<SocketAddr> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Whether the admin API's `/ready` says LIVE (200): initialization, including fetching remote
/// data sources, is over and the workers accept connections.
fn is_live(admin: SocketAddr) -> bool {
    get(&format!("http://{admin}/ready")).is_ok_and(|response| response.status == 200)
}

/// The first listener's address, once Envoy has bound it.
fn listener_address(admin: SocketAddr) -> Option<SocketAddr> {
    let response = get(&format!("http://{admin}/listeners?format=json")).ok()?;
    if response.status != 200 {
        return None;
    }
    let listeners: Value = serde_json::from_str(&response.body).ok()?;
    let socket = &listeners["listener_statuses"][0]["local_address"]["socket_address"];
    let port = u16::try_from(socket["port_value"].as_u64()?)
        .ok()
        .filter(|port| *port != 0)?;
    Some(SocketAddr::new(
        socket["address"].as_str()?.parse().ok()?,
        port,
    ))
}

/// An HTTP response as read by [`get`].
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Header names (lowercase) and values in the order received.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    /// The first value of a header.
    #[allow(
        dead_code,
        reason = "used by the end-to-end tests, which compile this file too"
    )]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The status line and headers, one per line, as curl -i shows them.
    pub fn head(&self) -> String {
        let reason = ureq::http::StatusCode::from_u16(self.status)
            .ok()
            .and_then(|status| status.canonical_reason())
            .unwrap_or("");
        let mut head = format!("HTTP/1.1 {} {reason}\n", self.status);
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\n"));
        }
        head
    }
}

/// One GET over plain HTTP; any status is a response, only transport failures are errors.
pub fn get(url: &str) -> Result<Response> {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(10)))
        .build();
    let agent = ureq::Agent::new_with_config(config);
    let mut response = agent
        .get(url)
        .call()
        .with_context(|| format!("GET {url}"))?;
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = response
        .body_mut()
        .read_to_string()
        .with_context(|| format!("reading the body of GET {url}"))?;
    Ok(Response {
        status: response.status().as_u16(),
        headers,
        body,
    })
}
