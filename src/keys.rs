//! Ring look-ups cross the boundary once per key, so reading the key is on the hot path:
//! napi-rs's `String` asks Node for the length, allocates, then copies. A key that fits
//! a stack buffer is read with one call and no allocation; a longer one the usual way.

use napi::{bindgen_prelude::Result, check_status, sys, JsString, JsValue};

const STACK: usize = 256;

/// Calls `f` with the UTF-8 text of `key` (lone surrogates replaced, as napi does).
pub fn with_key<R>(key: &JsString, f: impl FnOnce(&str) -> R) -> Result<R> {
    let value = key.value();
    let mut buf = [0u8; STACK];
    let mut written = 0usize;
    check_status!(unsafe {
        sys::napi_get_value_string_utf8(
            value.env,
            value.value,
            buf.as_mut_ptr().cast(),
            STACK,
            &mut written,
        )
    })?;
    // Node stops before a character that does not fit (up to 4 bytes) and keeps one byte
    // for the terminator: anything this close to the end may have been cut.
    if written + 5 <= STACK {
        if let Ok(text) = std::str::from_utf8(&buf[..written]) {
            return Ok(f(text));
        }
    }
    let owned = key.into_utf8()?;
    Ok(f(owned.as_str()?))
}
