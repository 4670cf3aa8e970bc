//! Property tests of the decoders that face the network: whatever bytes arrive, they
//! decode or are refused with an error, never a panic, and what we encode decodes back.

use bytes::Bytes;
use hyper::header::HeaderValue;
use proptest::prelude::*;
use swarm_core::messaging::{codec, path, Payload, TaskRequest};

fn content_type() -> impl Strategy<Value = Option<HeaderValue>> {
    prop_oneof![
        Just(None),
        Just(Some(HeaderValue::from_static("application/json"))),
        Just(Some(HeaderValue::from_static(
            "application/json; charset=utf-8"
        ))),
        "[ -~]{0,40}".prop_map(|s| HeaderValue::from_str(&s).ok()),
    ]
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        ".{0,12}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map(".{0,6}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn any_body_decodes_or_is_refused(body in prop::collection::vec(any::<u8>(), 0..256), ct in content_type()) {
        match Payload::decode(ct.as_ref(), Bytes::from(body)) {
            Ok(Payload::Json(json)) => prop_assert!(serde_json::from_slice::<serde_json::Value>(&json).is_ok()),
            Ok(Payload::Text(text)) => prop_assert!(std::str::from_utf8(&text).is_ok()),
            Ok(Payload::Empty) => prop_assert!(false, "decode never gives Empty"),
            Err(_) => {}
        }
    }

    #[test]
    fn any_task_body_parses_or_is_refused(body in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = TaskRequest::parse(&Payload::Json(Bytes::from(body)));
    }

    #[test]
    fn task_requests_round_trip(name in ".{1,24}", args in prop::collection::vec(json_value(), 0..5)) {
        let args = serde_json::to_vec(&args).unwrap();
        let parsed = TaskRequest::parse(&Payload::Json(TaskRequest::encode(&name, &args))).unwrap();
        prop_assert_eq!(parsed.task, name);
        let back: serde_json::Value = serde_json::from_slice(&parsed.args).unwrap();
        prop_assert_eq!(back, serde_json::from_slice::<serde_json::Value>(&args).unwrap());
    }

    #[test]
    fn topic_paths_round_trip(topic in ".{0,40}") {
        let encoded = path::encode(&topic);
        prop_assert!(encoded.is_ascii());
        prop_assert_eq!(path::decode(&encoded[1..]), topic);
    }

    #[test]
    fn any_request_path_splits(raw in ".{0,60}") {
        let topics = codec::topics(&path::decode(&raw));
        prop_assert!(!topics.is_empty());
    }
}
