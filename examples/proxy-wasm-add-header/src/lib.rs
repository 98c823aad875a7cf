//! add-header on the plain `proxy-wasm` crate, in the style of proxy-wasm-rust-sdk's examples.
//!
//! The reference for Filterkit's add-header (filters/add-header): the same behaviour, written
//! the way most Rust Proxy-Wasm filters are written today. It is the size and cost baseline.

use log::error;
use proxy_wasm::traits::*;
use proxy_wasm::types::*;
use serde::Deserialize;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(AddHeaderRoot { header: None })
    });
}}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Config {
    name: String,
    value: String,
}

struct AddHeaderRoot {
    header: Option<(String, String)>,
}

impl Context for AddHeaderRoot {}

impl AddHeaderRoot {
    fn root_id(&self) -> String {
        self.get_property(vec!["plugin_root_id"])
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }
}

fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn validate(config: &Config) -> Result<(), String> {
    if !is_token(&config.name) {
        return Err(format!(
            "header name {:?} is not a valid HTTP token",
            config.name
        ));
    }
    if config.value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(format!(
            "header value {:?} contains a control character",
            config.value
        ));
    }
    Ok(())
}

impl RootContext for AddHeaderRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let Some(bytes) = self.get_plugin_configuration() else {
            self.header = None;
            return true;
        };
        if bytes.is_empty() {
            self.header = None;
            return true;
        }
        let config = serde_json::from_slice::<Config>(&bytes)
            .map_err(|e| e.to_string())
            .and_then(|config| validate(&config).map(|()| config));
        match config {
            Ok(config) => {
                self.header = Some((config.name.to_ascii_lowercase(), config.value));
                true
            }
            Err(problem) => {
                error!(
                    "invalid plugin configuration for root_id={}: {}",
                    self.root_id(),
                    problem
                );
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(AddHeader {
            header: self.header.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct AddHeader {
    header: Option<(String, String)>,
}

impl Context for AddHeader {}

impl HttpContext for AddHeader {
    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        self.add_http_response_header("resp-header-demo", "added by our filter");
        if let Some((name, value)) = &self.header {
            self.add_http_response_header(name, value);
        }
        Action::Continue
    }
}
