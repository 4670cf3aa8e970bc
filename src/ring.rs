//! `HashRing`: the engine's rings (`hashring@3`'s, or the opt-in xxh3 one), exposed to
//! JavaScript.

use std::sync::Arc;

use napi::{
    bindgen_prelude::{Result, Unknown},
    Env,
};
use napi_derive::napi;

use swarm_core::ring::{Ring, RingKind};

use crate::bare::key_function;

/// A consistent-hash ring: by default placing keys exactly as hashring@3 does.
#[napi(js_name = "HashRing")]
pub struct JsHashRing {
    inner: Arc<Ring>,
}

#[napi]
impl JsHashRing {
    /// Builds the ring of `kind` (`hashring`, the default, or `xxh3`) over `servers`
    /// (duplicates dropped, the first kept), as [`Ring::new`] does.
    #[napi(constructor)]
    pub fn new(servers: Vec<String>, kind: Option<String>) -> Result<Self> {
        let kind: RingKind = match kind {
            None => RingKind::default(),
            Some(kind) => kind
                .parse()
                .map_err(|()| napi::Error::from_reason(format!("Invalid ring {kind}")))?,
        };
        Ok(JsHashRing {
            inner: Arc::new(Ring::new(kind, servers)),
        })
    }

    /// The server owning `key`, or `null` when the ring is empty (hashring@3 gives `undefined`).
    #[napi]
    pub fn get(&self, key: String) -> Option<String> {
        self.inner.get(&key).map(str::to_owned)
    }

    /// A function `(key) => number`: the position in `servers` of the owner of `key`, or
    /// -1 on an empty ring. A look-up without a string coming back and without the
    /// method-call layer (the facade's `HashRing.get` uses it).
    #[napi(ts_return_type = "(key: string) => number")]
    pub fn indexer<'env>(&self, env: &'env Env) -> Result<Unknown<'env>> {
        let ring = self.inner.clone();
        key_function(env, "index", move |key| {
            ring.index(key).map_or(-1.0, |i| i as f64)
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
