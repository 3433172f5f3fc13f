//! Local ports for the servers the tests start themselves (Kafka brokers, Prometheus),
//! which must be told a port up front. weir is not one of them: it binds
//! `127.0.0.1:0` and logs the port it got.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::{Mutex, PoisonError};

/// `N` distinct ports on 127.0.0.1, free a moment ago and never handed out before in
/// this test process. Each port is found by binding port 0, and every listener is
/// held until all `N` are chosen, then all are released together: released one at a
/// time, the kernel may hand the same port out twice (it did: a broker got one port
/// for two listeners and refused to start). Another process may still bind a port
/// before the caller's server does; callers retry on "address already in use".
pub fn free_ports<const N: usize>() -> [u16; N] {
    // Tests run on parallel threads: a port picked by one is never picked by another.
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    let mut held = Vec::with_capacity(N);
    let mut ports = [0; N];
    let mut chosen = 0;
    while chosen < N {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = listener.local_addr().expect("a bound address").port();
        if handed_out.insert(port) {
            ports[chosen] = port;
            chosen += 1;
        }
        // Held even when refused, so that the kernel offers another port next.
        held.push(listener);
    }
    drop(held);
    ports
}

/// Whether a server's output says it could not bind its port (Kafka: "Address
/// already in use", Prometheus: "address already in use").
pub fn port_taken(output: &str) -> bool {
    output
        .to_ascii_lowercase()
        .contains("address already in use")
}
