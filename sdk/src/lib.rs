//! filterkit: a lean `no_std` Proxy-Wasm SDK.
#![no_std]
extern crate alloc;
