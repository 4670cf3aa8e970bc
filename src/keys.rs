//! Ring look-ups cross the boundary once per key, so that crossing is kept to the bare
//! napi calls: a look-up is a plain JavaScript function made with `napi_create_function`
//! (no class instance to unwrap, no argument conversion layer), and a key that fits a
//! stack buffer is read with one call and no allocation; a longer one the usual way.

use std::{ffi::c_void, ptr};

use napi::{
    bindgen_prelude::{FromNapiValue, Unknown},
    check_status, sys, Env, Error, Result, Status,
};

const STACK: usize = 256;

/// Calls `f` with the UTF-8 text of the JavaScript string `value` (lone surrogates
/// replaced, as napi does).
unsafe fn with_key<R>(
    env: sys::napi_env,
    value: sys::napi_value,
    f: impl FnOnce(&str) -> R,
) -> Result<R> {
    let mut buf = [0u8; STACK];
    let mut written = 0usize;
    check_status!(sys::napi_get_value_string_utf8(
        env,
        value,
        buf.as_mut_ptr().cast(),
        STACK,
        &mut written,
    ))?;
    // Node stops before a character that does not fit (up to 4 bytes) and keeps one byte
    // for the terminator: anything this close to the end may have been cut.
    if written + 5 <= STACK {
        if let Ok(text) = std::str::from_utf8(&buf[..written]) {
            return Ok(f(text));
        }
    }
    let mut len = 0usize;
    check_status!(sys::napi_get_value_string_utf8(
        env,
        value,
        ptr::null_mut(),
        0,
        &mut len
    ))?;
    let mut owned = vec![0u8; len + 1];
    check_status!(sys::napi_get_value_string_utf8(
        env,
        value,
        owned.as_mut_ptr().cast(),
        len + 1,
        &mut written,
    ))?;
    owned.truncate(written);
    let text = String::from_utf8(owned).map_err(|e| Error::new(Status::InvalidArg, e))?;
    Ok(f(&text))
}

/// What a look-up function computes from its key.
type Lookup = Box<dyn Fn(&str) -> f64>;

/// A JavaScript function `(key: string) => number` computing `lookup(key)`; a key that is
/// not a string throws a `TypeError`.
pub fn key_function<'env>(
    env: &'env Env,
    name: &str,
    lookup: impl Fn(&str) -> f64 + 'static,
) -> Result<Unknown<'env>> {
    let data = Box::into_raw(Box::new(Box::new(lookup) as Lookup));
    let raw_env = env.raw();
    let mut function = ptr::null_mut();
    let created = unsafe {
        check_status!(sys::napi_create_function(
            raw_env,
            name.as_ptr().cast(),
            name.len() as isize,
            Some(call),
            data.cast(),
            &mut function,
        ))
        .and_then(|()| {
            check_status!(sys::napi_add_finalizer(
                raw_env,
                function,
                data.cast(),
                Some(release),
                ptr::null_mut(),
                ptr::null_mut(),
            ))
        })
    };
    if let Err(e) = created {
        drop(unsafe { Box::from_raw(data) });
        return Err(e);
    }
    unsafe { Unknown::from_napi_value(raw_env, function) }
}

unsafe extern "C" fn call(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    let mut argc = 1usize;
    let mut key = ptr::null_mut();
    let mut data: *mut c_void = ptr::null_mut();
    let mut result = ptr::null_mut();
    let got = sys::napi_get_cb_info(env, info, &mut argc, &mut key, ptr::null_mut(), &mut data);
    let lookup = &*(data as *const Lookup);
    let value = if got == sys::Status::napi_ok && argc >= 1 {
        with_key(env, key, lookup)
    } else {
        Err(Error::new(Status::InvalidArg, "a key is required"))
    };
    match value {
        Ok(number) => {
            sys::napi_create_double(env, number, &mut result);
        }
        Err(_) => {
            sys::napi_throw_type_error(env, ptr::null(), c"the key must be a string".as_ptr());
        }
    }
    result
}

unsafe extern "C" fn release(_env: sys::napi_env, data: *mut c_void, _hint: *mut c_void) {
    drop(Box::from_raw(data as *mut Lookup));
}
