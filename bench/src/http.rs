//! HTTP/1.0 GETs of the endpoints the benchmarks read (weir's and Jaeger's
//! `/metrics`, health checks) and the Prometheus text they answer.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::anyhow;

/// One HTTP/1.0 GET of `path` from `address` (`host:port`): status and body.
pub fn get(address: &str, path: &str) -> anyhow::Result<(u16, String)> {
    let socket: SocketAddr = address
        .parse()
        .map_err(|e| anyhow!("{address} is not host:port ({e})"))?;
    let mut stream = TcpStream::connect_timeout(&socket, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n")?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let response = String::from_utf8_lossy(&response);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("no HTTP status line from {address}{path}"))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// The sum of the samples of metric `name` (whole name) over its label sets.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let value = match rest.as_bytes().first()? {
                b'{' => rest.rsplit_once('}')?.1,
                b' ' => rest,
                _ => return None,
            };
            value.split_whitespace().next()?.parse::<f64>().ok()
        })
        .sum()
}
