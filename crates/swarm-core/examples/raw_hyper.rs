//! The raw limit of the messaging benchmarks: the same `POST /echo` exchange over
//! HTTP/1.1 between a minimal hyper server and client, with no JavaScript at all.
//!
//! `raw_hyper serve <ip:port>` serves until stdin closes; `raw_hyper bench <ip:port> <n>
//! <concurrency> [seconds]` sends up to `n` requests over `concurrency` connections, none
//! once `seconds` have passed, and prints `{"n","concurrency","opsPerSec","p50","p99"}`
//! (µs) of those it sent. `raw_hyper engine ...` does the same through the engine's
//! client on the runtime over HTTP/1.1, its peer: how a node sends off the loop's thread.

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, header, service::service_fn, Request, Response};
use hyper_util::rt::TokioIo;
use swarm_core::messaging::{Client, ClientConfig, Payload};
use tokio::{io::AsyncReadExt, net::TcpListener, net::TcpStream};

async fn echo(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .expect("a valid response"))
}

async fn serve(addr: SocketAddr) {
    let listener = TcpListener::bind(addr).await.expect("bind");
    println!("ready");
    let accept = async {
        loop {
            let (stream, _) = listener.accept().await.expect("accept");
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let io = TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service_fn(echo))
                    .await;
            });
        }
    };
    // Stops when the parent closes our stdin.
    let mut stdin = tokio::io::stdin();
    let mut sink = [0u8; 64];
    tokio::select! {
        _ = accept => {}
        _ = async { while stdin.read(&mut sink).await.map(|n| n > 0).unwrap_or(false) {} } => {}
    }
}

/// One worker's exchanges: `exchange(i)` sends request `i` and waits for its reply.
type Exchange = Box<dyn FnMut(usize) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// Runs the workers, worker `w` sending requests `w`, `w + concurrency`, ... up to `n`,
/// none once `seconds` have passed, and prints what was measured.
async fn measure(n: usize, workers: Vec<Exchange>, seconds: Option<f64>) {
    let concurrency = workers.len();
    let started = Instant::now();
    let until = seconds.map(|s| started + Duration::from_secs_f64(s));
    let running: Vec<_> = (0..)
        .zip(workers)
        .map(|(w, mut exchange)| {
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut i = w;
                while i < n && until.is_none_or(|until| Instant::now() < until) {
                    let t = Instant::now();
                    exchange(i).await;
                    latencies.push(t.elapsed().as_secs_f64() * 1e6);
                    i += concurrency;
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(n);
    for worker in running {
        latencies.extend(worker.await.expect("a worker"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let n = latencies.len();
    let at = |q: f64| latencies[((n as f64 * q) as usize).min(n - 1)].round();
    println!(
        "{{\"n\":{n},\"concurrency\":{concurrency},\"opsPerSec\":{},\"p50\":{},\"p99\":{}}}",
        (n as f64 / elapsed).round(),
        at(0.5),
        at(0.99)
    );
}

/// hyper's own client, a connection per worker.
async fn raw_workers(addr: SocketAddr, concurrency: usize) -> Vec<Exchange> {
    let mut workers: Vec<Exchange> = Vec::new();
    for _ in 0..concurrency {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let _ = stream.set_nodelay(true);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        workers.push(Box::new(move |i| {
            let request = Request::post(format!("http://{addr}/echo"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(format!("{{\"i\":{i}}}"))))
                .expect("a valid request");
            let response = sender.send_request(request);
            Box::pin(async move {
                let response = response.await.expect("a response");
                response.into_body().collect().await.expect("a body");
            })
        }));
    }
    workers
}

/// The engine's client on the runtime, over HTTP/1.1 (as a 0.5.1 peer is sent to off
/// the loop's thread): the workers share its pool.
fn engine_workers(addr: SocketAddr, concurrency: usize) -> Vec<Exchange> {
    let client = Client::new(ClientConfig {
        port: addr.port(),
        multiplex: false,
        ..ClientConfig::default()
    });
    let ip = addr.ip().to_string();
    (0..concurrency)
        .map(|_| {
            let (client, ip) = (client.clone(), ip.clone());
            Box::new(move |i: usize| {
                let (client, ip) = (client.clone(), ip.clone());
                let body = Payload::Json(Bytes::from(format!("{{\"i\":{i}}}")));
                Box::pin(async move {
                    client.send(&ip, "echo", body).await.expect("a reply");
                }) as Pin<Box<dyn Future<Output = ()> + Send>>
            }) as Exchange
        })
        .collect()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: raw_hyper serve <ip:port> | raw_hyper bench|engine <ip:port> <n> <concurrency> [seconds]";
    let addr: SocketAddr = args.get(2).and_then(|a| a.parse().ok()).expect(usage);
    let number = |i: usize| args.get(i).and_then(|a| a.parse().ok()).expect(usage);
    let seconds = args.get(5).map(|a| a.parse().expect(usage));
    match args.get(1).map(String::as_str) {
        Some("serve") => serve(addr).await,
        Some("bench") => measure(number(3), raw_workers(addr, number(4)).await, seconds).await,
        Some("engine") => measure(number(3), engine_workers(addr, number(4)), seconds).await,
        _ => panic!("{usage}"),
    }
}
