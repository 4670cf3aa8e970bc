//! The calls JavaScript makes for every message or key cross the boundary through bare
//! functions: plain JavaScript functions made with `napi_create_function` around a
//! closure, without napi-rs's method layer (the class instance unwrapped and its type
//! tag checked, each argument converted through a generic layer), which cost about twice
//! the call itself on the path of every message. A string argument that fits a stack
//! buffer is read with one call and no allocation.

use std::{
    ffi::{c_void, CString},
    ptr,
};

use napi::{
    bindgen_prelude::{FromNapiValue, Unknown},
    check_status, sys, Env, Error, Result, Status,
};

use crate::scope::Scope;

const STACK: usize = 256;

/// Arguments a bare function reads at most.
const MAX_ARGS: usize = 5;

/// The arguments of one call of a bare function.
pub struct Args {
    env: sys::napi_env,
    values: [sys::napi_value; MAX_ARGS],
    count: usize,
}

/// A string argument's text: read into the stack buffer, or owned when it did not fit.
enum Text<'a> {
    Stack(&'a str),
    Owned(String),
}

impl Args {
    fn value(&self, index: usize) -> Result<sys::napi_value> {
        if index < self.count {
            Ok(self.values[index])
        } else {
            Err(Error::new(
                Status::InvalidArg,
                format!("argument {} is missing", index + 1),
            ))
        }
    }

    /// Calls `f` with the UTF-8 text of string argument `index` (lone surrogates
    /// replaced, as napi does).
    pub fn with_text<R>(&self, index: usize, f: impl FnOnce(&str) -> R) -> Result<R> {
        let mut stack = [0u8; STACK];
        // SAFETY: a value of this call, on the JavaScript thread.
        Ok(
            match unsafe { read_text(self.env, self.value(index)?, &mut stack) }? {
                Text::Stack(text) => f(text),
                Text::Owned(text) => f(&text),
            },
        )
    }

    /// Calls `f` with the texts of string arguments `first` and `second`.
    pub fn with_texts<R>(
        &self,
        first: usize,
        second: usize,
        f: impl FnOnce(&str, &str) -> R,
    ) -> Result<R> {
        self.with_text(first, |a| self.with_text(second, |b| f(a, b)))?
    }

    /// String argument `index`.
    pub fn string(&self, index: usize) -> Result<String> {
        let mut stack = [0u8; STACK];
        // SAFETY: as in `with_text`.
        Ok(
            match unsafe { read_text(self.env, self.value(index)?, &mut stack) }? {
                Text::Stack(text) => text.to_owned(),
                Text::Owned(text) => text,
            },
        )
    }

    /// String argument `index`, `None` for `null` or `undefined`, or when not passed.
    pub fn optional_string(&self, index: usize) -> Result<Option<String>> {
        match self.kind(index)? {
            sys::ValueType::napi_null | sys::ValueType::napi_undefined => Ok(None),
            _ => self.string(index).map(Some),
        }
    }

    /// The type of argument `index`; `undefined` when not passed.
    pub fn kind(&self, index: usize) -> Result<sys::napi_valuetype> {
        let mut kind = sys::ValueType::napi_undefined;
        if index < self.count {
            // SAFETY: as in `with_text`.
            check_status!(unsafe { sys::napi_typeof(self.env, self.values[index], &mut kind) })?;
        }
        Ok(kind)
    }

    /// The scope Node opened for this call, where a returned value is made.
    pub fn scope(&self) -> Scope {
        // SAFETY: `Args` exist only inside the call they are of, on its thread.
        unsafe { Scope::entered(self.env) }
    }

    /// Number argument `index`, as napi converts it to a `u32`.
    pub fn u32(&self, index: usize) -> Result<u32> {
        let mut number = 0;
        // SAFETY: as in `with_text`.
        check_status!(unsafe {
            sys::napi_get_value_uint32(self.env, self.value(index)?, &mut number)
        })?;
        Ok(number)
    }
}

/// Reads the JavaScript string `value` into `stack` when it fits, else into a new string.
///
/// # Safety
/// On the JavaScript thread of `env`, inside the call that `value` is an argument of.
unsafe fn read_text<'a>(
    env: sys::napi_env,
    value: sys::napi_value,
    stack: &'a mut [u8; STACK],
) -> Result<Text<'a>> {
    let mut written = 0usize;
    // SAFETY: `value` lives in the call that runs now (the caller's contract); `stack`
    // has room for `STACK` bytes.
    check_status!(unsafe {
        sys::napi_get_value_string_utf8(env, value, stack.as_mut_ptr().cast(), STACK, &mut written)
    })?;
    // Node stops before a character that does not fit (up to 4 bytes) and keeps one byte
    // for the terminator: anything this close to the end may have been cut.
    if written + 5 <= STACK {
        if let Ok(text) = std::str::from_utf8(&stack[..written]) {
            return Ok(Text::Stack(text));
        }
    }
    let mut len = 0usize;
    // SAFETY: as above; with no buffer, only the length is written.
    check_status!(unsafe {
        sys::napi_get_value_string_utf8(env, value, ptr::null_mut(), 0, &mut len)
    })?;
    let mut owned = vec![0u8; len + 1];
    // SAFETY: as above; `owned` has room for `len + 1` bytes.
    check_status!(unsafe {
        sys::napi_get_value_string_utf8(
            env,
            value,
            owned.as_mut_ptr().cast(),
            len + 1,
            &mut written,
        )
    })?;
    owned.truncate(written);
    String::from_utf8(owned)
        .map(Text::Owned)
        .map_err(|e| Error::new(Status::InvalidArg, e))
}

/// What a bare function returns.
pub enum Returned {
    Number(f64),
    Undefined,
    /// A value made in the call's scope ([`Args::scope`]).
    Value(sys::napi_value),
}

/// What a bare function computes from its arguments.
type Body = Box<dyn Fn(&Args) -> Result<Returned>>;

/// A JavaScript function named `name` computing `body` from its arguments; an error
/// throws a `TypeError` with its message.
pub fn bare_function<'env>(
    env: &'env Env,
    name: &str,
    body: impl Fn(&Args) -> Result<Returned> + 'static,
) -> Result<Unknown<'env>> {
    let data = Box::into_raw(Box::new(Box::new(body) as Body));
    let raw_env = env.raw();
    let mut function = ptr::null_mut();
    // SAFETY: on the JavaScript thread; `data` lives until the function's finalizer.
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
        // SAFETY: no function holds `data`.
        drop(unsafe { Box::from_raw(data) });
        return Err(e);
    }
    // SAFETY: a value just made in this environment.
    unsafe { Unknown::from_napi_value(raw_env, function) }
}

/// A bare function `(key: string) => number` computing `lookup(key)`.
pub fn key_function<'env>(
    env: &'env Env,
    name: &str,
    lookup: impl Fn(&str) -> f64 + 'static,
) -> Result<Unknown<'env>> {
    bare_function(env, name, move |args| {
        args.with_text(0, &lookup)
            .map(Returned::Number)
            .map_err(|_| Error::new(Status::InvalidArg, "the key must be a string"))
    })
}

/// The callback of every bare function: reads the arguments and computes the `Body`.
///
/// # Safety
/// Called by Node-API alone, for a function made by [`bare_function`], whose `data` is
/// its `Body`.
unsafe extern "C" fn call(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    let mut args = Args {
        env,
        values: [ptr::null_mut(); MAX_ARGS],
        count: MAX_ARGS,
    };
    let mut data: *mut c_void = ptr::null_mut();
    let mut result = ptr::null_mut();
    // SAFETY: `env` and `info` are of the call that runs now (the contract); `values` has
    // room for `count` arguments.
    let got = unsafe {
        sys::napi_get_cb_info(
            env,
            info,
            &mut args.count,
            args.values.as_mut_ptr(),
            ptr::null_mut(),
            &mut data,
        )
    };
    // Napi reports how many arguments were passed, which may exceed what it wrote.
    args.count = args.count.min(MAX_ARGS);
    let value = if got == sys::Status::napi_ok {
        // SAFETY: read above: the function's `Body` (the contract), which `release` frees
        // only once the function is gone.
        let body = unsafe { &*(data as *const Body) };
        body(&args)
    } else {
        Err(Error::new(Status::InvalidArg, "unreadable arguments"))
    };
    match value {
        Ok(Returned::Number(number)) => {
            // SAFETY: inside the call, in the scope Node opened for it.
            unsafe { sys::napi_create_double(env, number, &mut result) };
        }
        Ok(Returned::Value(value)) => result = value,
        // A null result is `undefined`.
        Ok(Returned::Undefined) => {}
        Err(e) => {
            let message = CString::new(e.reason.replace('\0', " ")).unwrap_or_default();
            // SAFETY: as for a number; `message` is a C string that outlives the call.
            unsafe { sys::napi_throw_type_error(env, ptr::null(), message.as_ptr()) };
        }
    }
    result
}

/// Frees a bare function's `Body` once the function is collected.
///
/// # Safety
/// Called by Node-API alone, once, as the finalizer of a function made by
/// [`bare_function`], with its `data`.
unsafe extern "C" fn release(_env: sys::napi_env, data: *mut c_void, _hint: *mut c_void) {
    // SAFETY: the box `bare_function` made for this function (the contract); no call of
    // it runs after its finalizer.
    drop(unsafe { Box::from_raw(data as *mut Body) });
}
