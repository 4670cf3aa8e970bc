//! The body codec on any bytes and any `Content-Type`: a request body decodes or is
//! refused, never a panic, and arrives intact; a reply always decodes; a `_task` body that
//! parses encodes back to the same request.
#![no_main]

use bytes::Bytes;
use hyper::header::HeaderValue;
use libfuzzer_sys::fuzz_target;
use swarm_core::messaging::{Payload, TaskRequest};

fuzz_target!(|input: (&[u8], u16, &[u8])| {
    let (content_type, status, body) = input;
    let content_type = HeaderValue::from_bytes(content_type).ok();
    let body = Bytes::copy_from_slice(body);

    match Payload::decode(content_type.as_ref(), body.clone()) {
        Ok(Payload::Json(json)) => assert_eq!(json, body),
        Ok(Payload::Text(text)) => {
            assert_eq!(text, body);
            assert!(std::str::from_utf8(&text).is_ok());
        }
        Ok(Payload::Empty) => panic!("a request body never decodes as empty"),
        Err(_) => {}
    }

    let reply = Payload::decode_reply(status, content_type.as_ref(), body.clone());
    assert!(status != 204 || reply == Payload::Empty);

    if let Ok(request) = TaskRequest::parse(&Payload::Json(body)) {
        assert!(!request.task.is_empty());
        let encoded = Payload::Json(TaskRequest::encode(&request.task, &request.args));
        let again = TaskRequest::parse(&encoded).expect("an encoded request parses");
        assert_eq!((again.task, again.args), (request.task, request.args));
    }
});
