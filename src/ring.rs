//! `HashRing`: the engine's `hashring@3`-compatible ring, exposed to JavaScript.

use napi::{bindgen_prelude::Result, JsString};
use napi_derive::napi;

use crate::keys::with_key;

/// A consistent-hash ring placing keys exactly as hashring@3 does.
#[napi(js_name = "HashRing")]
pub struct JsHashRing {
    inner: swarm_core::ring::HashRing,
}

#[napi]
impl JsHashRing {
    /// Builds the ring over `servers`, in that order (duplicates dropped, the first
    /// kept). The order only decides ties: build every ring from the same order
    /// (node-swarm-kb uses the IPs sorted as strings).
    #[napi(constructor)]
    pub fn new(servers: Vec<String>) -> Self {
        JsHashRing {
            inner: swarm_core::ring::HashRing::new(servers),
        }
    }

    /// The server owning `key`, or `null` when the ring is empty (hashring@3 gives `undefined`).
    #[napi]
    pub fn get(&self, key: String) -> Option<String> {
        self.inner.get(&key).map(str::to_owned)
    }

    /// The position in `servers` of the owner of `key`, or -1 on an empty ring: a
    /// look-up without a string coming back (the facade's `HashRing.get` uses it).
    #[napi]
    pub fn index(&self, key: JsString) -> Result<i32> {
        with_key(&key, |key| {
            self.inner
                .index(key)
                .and_then(|i| i32::try_from(i).ok())
                .unwrap_or(-1)
        })
    }

    /// The owners of `keys`, in order: `get` for many keys in one call.
    #[napi]
    pub fn get_many(&self, keys: Vec<String>) -> Vec<Option<String>> {
        keys.iter()
            .map(|key| self.inner.get(key).map(str::to_owned))
            .collect()
    }

    /// The servers, in the order the ring was built from.
    #[napi(getter)]
    pub fn servers(&self) -> Vec<String> {
        self.inner.servers().to_vec()
    }
}
