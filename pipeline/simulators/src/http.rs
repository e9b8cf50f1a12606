//! What the HTTP simulators share: serving on an ephemeral port, error bodies, receipts.

use std::sync::Mutex;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};

/// Serves `app` on an ephemeral localhost port; its base URL and the serving task.
pub async fn spawn(app: Router) -> std::io::Result<(String, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((format!("http://{addr}"), task))
}

/// `{"error": code}` with `status`.
pub(crate) fn error(status: StatusCode, code: &str) -> Response {
    (status, Json(serde_json::json!({ "error": code }))).into_response()
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A receipt id derived from what it acknowledges: the same request, the same receipt.
pub(crate) fn receipt(prefix: &str, of: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(of.as_bytes());
    let hex = hex::encode(&digest[..8]);
    format!("{prefix}-{hex}")
}
