//! Topic paths: any topic survives encoding and decoding; any request path decodes and
//! splits into topics, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarm_core::messaging::{codec, path};

fuzz_target!(|input: (&str, &str)| {
    let (topic, raw) = input;
    let encoded = path::encode(topic);
    assert!(encoded.is_ascii() && encoded.starts_with('/'));
    assert_eq!(path::decode(&encoded[1..]), topic);

    assert!(!codec::topics(&path::decode(raw)).is_empty());
});
