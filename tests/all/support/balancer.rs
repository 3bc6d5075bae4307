//! A TCP load balancer in front of several servers, as operators put one in front of replicas:
//! each new connection goes to the next server in turn, past any that refuses it. A connection
//! whose server dies breaks; the client's retry opens a new one, which goes to a live server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::{TcpListener, TcpStream};

/// Stops balancing when dropped.
pub struct Balancer {
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Balancer {
    pub async fn start(servers: Vec<SocketAddr>) -> Balancer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let servers = Arc::new(servers);
        let next = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let servers = servers.clone();
                let first = next.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    for i in 0..servers.len() {
                        let server = servers[(first + i) % servers.len()];
                        if let Ok(mut upstream) = TcpStream::connect(server).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                            return;
                        }
                    }
                    // No server answers: the client sees its connection close and tries again.
                });
            }
        });
        Balancer { url, task }
    }
}
