//! Plain HTTP on the WebSocket port (`serve --static DIR`, `serve --web`):
//! requests without `Upgrade: websocket` get a file, the console page, or
//! an error status; one response per connection.
//!
//! Paths are percent-decoded and taken segment by segment: a `..` segment
//! is refused (403) rather than resolved, and a file reached through a
//! symbolic link that leads out of DIR is refused too. A directory serves
//! its `index.html`; there are no listings.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use dialtone::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use dialtone::{HttpRequest, Transport};
use percent_encoding::percent_decode_str;
use tracing::info;

/// The console page served at `/` with `--web`.
const CONSOLE: &str = include_str!("console.html");

/// What plain HTTP requests are answered from.
pub(crate) struct Site {
    /// `--static`, canonical, so that resolved files can be checked to be
    /// inside it.
    root: Option<PathBuf>,
    /// `--web`: the console at `/`.
    console: bool,
}

impl Site {
    pub(crate) fn new(root: Option<&Path>, console: bool) -> Result<Self> {
        let root = match root {
            Some(dir) => {
                let canonical = dir
                    .canonicalize()
                    .with_context(|| format!("--static {}", dir.display()))?;
                anyhow::ensure!(
                    canonical.is_dir(),
                    "--static {}: not a directory",
                    dir.display()
                );
                Some(canonical)
            }
            None => None,
        };
        Ok(Site { root, console })
    }

    /// Answers one request and logs it.
    pub(crate) async fn answer(
        &self,
        http: HttpRequest<Transport>,
        peer: SocketAddr,
    ) -> Result<()> {
        let method = http.request().method().clone();
        let target = http.request().uri().to_string();
        let version = http.request().version();
        let status = self.respond(http).await?;
        info!(%peer, http = ?version, %method, target, status = status.as_u16(), "http");
        Ok(())
    }

    async fn respond(&self, http: HttpRequest<Transport>) -> Result<StatusCode> {
        let request = http.request();
        if request.method() != Method::GET && request.method() != Method::HEAD {
            let mut headers = text_headers();
            headers.insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return error(http, StatusCode::METHOD_NOT_ALLOWED, headers).await;
        }
        let path = request.uri().path().to_owned();
        if self.console && path == "/" {
            let mut headers = common_headers();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            http.respond(StatusCode::OK, &headers, CONSOLE.as_bytes())
                .await?;
            return Ok(StatusCode::OK);
        }
        let Some(root) = &self.root else {
            return error(http, StatusCode::NOT_FOUND, text_headers()).await;
        };
        let file = match resolve(root, &path).await {
            Ok(file) => file,
            Err(status) => return error(http, status, text_headers()).await,
        };
        let (file, len, kind) = match open(&file).await {
            Ok(opened) => opened,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return error(http, StatusCode::NOT_FOUND, text_headers()).await
            }
            Err(_) => return error(http, StatusCode::FORBIDDEN, text_headers()).await,
        };
        let mut headers = common_headers();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
        http.respond_with(StatusCode::OK, &headers, len, file)
            .await?;
        Ok(StatusCode::OK)
    }
}

/// The answer to a plain request when there is no page to serve: what the
/// library's `accept` answers (`405` to a method other than GET, else
/// `426` with `Upgrade: websocket`).
pub(crate) async fn upgrade_required(http: HttpRequest<Transport>) -> Result<()> {
    let mut headers = text_headers();
    if http.request().method() != Method::GET {
        headers.insert(header::ALLOW, HeaderValue::from_static("GET"));
        error(http, StatusCode::METHOD_NOT_ALLOWED, headers).await?;
        return Ok(());
    }
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    let body = b"this port speaks WebSocket: missing `Upgrade: websocket`\n";
    http.respond(StatusCode::UPGRADE_REQUIRED, &headers, body)
        .await?;
    Ok(())
}

fn common_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers
}

fn text_headers() -> HeaderMap {
    let mut headers = common_headers();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers
}

/// Answers `status` with its reason phrase as the body.
async fn error(
    http: HttpRequest<Transport>,
    status: StatusCode,
    headers: HeaderMap,
) -> Result<StatusCode> {
    let body = format!("{status}\n");
    http.respond(status, &headers, body.as_bytes()).await?;
    Ok(status)
}

/// The file under `root` that `path` (a request's percent-encoded path)
/// names, or the status to refuse it with.
async fn resolve(root: &Path, path: &str) -> Result<PathBuf, StatusCode> {
    let decoded = percent_decode_str(path)
        .decode_utf8()
        .map_err(|_| StatusCode::BAD_REQUEST)?;
    let mut file = root.to_path_buf();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => return Err(StatusCode::FORBIDDEN),
            // A backslash or NUL has no business in a name served here.
            s if s.contains(['\\', '\0']) => return Err(StatusCode::BAD_REQUEST),
            s => file.push(s),
        }
    }
    if tokio::fs::metadata(&file).await.is_ok_and(|m| m.is_dir()) {
        file.push("index.html");
    }
    // Symbolic links may point anywhere: what they lead to must be inside.
    match tokio::fs::canonicalize(&file).await {
        Ok(real) if real.starts_with(root) => Ok(real),
        Ok(_) => Err(StatusCode::FORBIDDEN),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StatusCode::NOT_FOUND),
        Err(_) => Err(StatusCode::FORBIDDEN),
    }
}

/// Opens a regular file: the file, its length and its content type.
async fn open(path: &Path) -> io::Result<(tokio::fs::File, u64, &'static str)> {
    let file = tokio::fs::File::open(path).await?;
    let meta = file.metadata().await?;
    if !meta.is_file() {
        return Err(io::Error::new(io::ErrorKind::NotFound, "not a file"));
    }
    Ok((file, meta.len(), content_type(path)))
}

/// The content type for a file name's extension.
fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("txt") => "text/plain; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("ico") => "image/x-icon",
        Some("wasm") => "application/wasm",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_follow_the_extension() {
        assert_eq!(
            content_type(Path::new("a/index.HTML")),
            "text/html; charset=utf-8"
        );
        assert_eq!(
            content_type(Path::new("app.js")),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type(Path::new("s.css")), "text/css; charset=utf-8");
        assert_eq!(content_type(Path::new("i.png")), "image/png");
        assert_eq!(
            content_type(Path::new("r.txt")),
            "text/plain; charset=utf-8"
        );
        assert_eq!(content_type(Path::new("blob")), "application/octet-stream");
    }

    #[tokio::test]
    async fn dot_dot_segments_are_refused_even_percent_encoded() {
        let root = std::env::temp_dir().canonicalize().unwrap();
        for path in [
            "/../etc/passwd",
            "/a/../../x",
            "/%2e%2e/x",
            "/%2E%2E%2Fx",
            "/..%5cx",
        ] {
            let got = resolve(&root, path).await;
            assert!(
                matches!(got, Err(StatusCode::FORBIDDEN | StatusCode::BAD_REQUEST)),
                "{path}: {got:?}"
            );
        }
    }
}
