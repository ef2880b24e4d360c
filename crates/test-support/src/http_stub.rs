//! A minimal HTTP/1.1 server on loopback for tests that stand in for a remote service (the
//! HuggingFace Hub, TensorBoard behind nginx): each request's head goes to a function that
//! returns the whole response, or `None` to hold the connection without answering.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

/// A running stub; it stops when dropped.
pub struct HttpStub {
    address: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl HttpStub {
    /// Serves on a free port of 127.0.0.1: `respond` gets each request's head (request line
    /// and headers) and returns the raw response (`HTTP/1.1 200 OK\r\n...`), or `None` to stay
    /// silent on that connection.
    ///
    /// # Panics
    /// When no loopback port can be bound, or outside a tokio runtime.
    pub async fn serve<F>(respond: F) -> Self
    where
        F: Fn(&str) -> Option<String> + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port for the HTTP stub");
        let address = listener.local_addr().expect("the stub's address");
        let respond = Arc::new(respond);
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let respond = respond.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buffer = [0u8; 1024];
                    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
                        match stream.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buffer[..n]),
                        }
                    }
                    match respond(&String::from_utf8_lossy(&head)) {
                        Some(response) => {
                            let _ = stream.write_all(response.as_bytes()).await;
                        }
                        // Silent: hold the connection until the stub or the test ends.
                        None => std::future::pending::<()>().await,
                    }
                });
            }
        });
        Self { address, task }
    }

    /// `127.0.0.1:<port>`.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }
}

impl Drop for HttpStub {
    fn drop(&mut self) {
        self.task.abort();
    }
}
