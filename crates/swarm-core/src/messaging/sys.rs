//! The socket calls whose form differs between platforms. Pods run on Linux; macOS and
//! Windows run the engine for development. The addon gives the engine no
//! [`super::loop_io::EventLoop`] on Windows, so there the runtime reads and writes every
//! connection. A multiplexed connection read by a loop while the runtime writes it needs
//! the readiness of a raw socket ([`tokio::io::unix::AsyncFd`]), which tokio tells on
//! Unix alone: elsewhere the engine gets [`io::ErrorKind::Unsupported`] for it.

use std::{io, mem::MaybeUninit, net::TcpStream};

#[cfg(unix)]
pub use std::os::fd::RawFd as RawSocket;
#[cfg(windows)]
pub use std::os::windows::io::RawSocket;

/// The raw socket of `socket`, what a loop watches.
#[cfg(unix)]
pub fn raw(socket: &impl std::os::fd::AsRawFd) -> RawSocket {
    socket.as_raw_fd()
}

/// The raw socket of `socket`, what a loop watches.
#[cfg(windows)]
pub fn raw(socket: &impl std::os::windows::io::AsRawSocket) -> RawSocket {
    socket.as_raw_socket()
}

/// Reads what `socket` holds into `buf` without initializing it first.
pub fn recv(socket: &TcpStream, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
    socket2::SockRef::from(socket).recv(buf)
}

/// What a connection read on another thread's loop gets where there is none.
#[cfg(not(unix))]
pub fn no_event_loop() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "a connection is read on another thread's loop on Unix only",
    )
}

/// True once the peer has ended its side of the connection, or reset it: a server of
/// ours does so only after a go-away or when it died, so a request written now would
/// never be read. Seen by the kernel's socket, which knows of a FIN the reader may not
/// have read yet (replies can be waiting before it). Asked by `poll` for `POLLRDHUP`
/// (set by a FIN or a reset), which is done before each write: cheaper than reading the
/// TCP state through `TCP_INFO`.
#[cfg(target_os = "linux")]
pub fn peer_closed(socket: RawSocket) -> bool {
    let mut watched = libc::pollfd {
        fd: socket,
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid `pollfd`, whose descriptor the caller keeps open; a zero
    // timeout never blocks.
    let ready = unsafe { libc::poll(&mut watched, 1, 0) };
    ready > 0 && watched.revents & (libc::POLLRDHUP | libc::POLLHUP) != 0
}

/// Elsewhere there is no `POLLRDHUP`: the peer's end is seen when the connection is
/// read.
#[cfg(not(target_os = "linux"))]
pub fn peer_closed(_: RawSocket) -> bool {
    false
}
