//! An endpoint that accepts connections and never answers: what a hung API server, engine or
//! proxy looks like from the client. Tests use it to show that every call is bounded.

/// A listener on loopback that accepts every connection and holds it open, silent, until the
/// returned guard is dropped.
pub struct SilentEndpoint {
    address: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl SilentEndpoint {
    /// Starts one on a free port of 127.0.0.1.
    ///
    /// # Panics
    /// When no loopback port can be bound, or outside a tokio runtime.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port for the silent endpoint");
        let address = listener.local_addr().expect("the listener's address");
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        Self { address, task }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// `127.0.0.1:<port>`.
    pub fn address(&self) -> std::net::SocketAddr {
        self.address
    }
}

impl Drop for SilentEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}
