//! One way to put a test server on the wire: an axum app on a free port of
//! 127.0.0.1, stopped when the returned sender fires or is dropped, so each
//! fixture server owns only its routes and its state.

use std::net::SocketAddr;

use axum::Router;
use tokio::sync::oneshot;

/// Serve `app` on 127.0.0.1 (a free port) in a background task: its address,
/// and the sender that shuts it down gracefully.
pub async fn serve(app: Router) -> (SocketAddr, oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
    });
    (addr, tx)
}
