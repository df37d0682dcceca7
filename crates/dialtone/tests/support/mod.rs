//! Helpers for the tests that run real servers (nginx, apache2, tinyproxy,
//! microsocks) on 127.0.0.1: temp dirs, child processes killed on drop,
//! certificates made with rcgen, and an echo listener.

#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dialtone::tls::ServerTls;
use dialtone::{Listener, Message};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};

/// A directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "dialtone-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `contents` to `name` in the directory; returns its path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The path of `program`, or a failure naming the Debian package to install.
pub fn require(program: &str, debian_package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join(program);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "`{program}` not found: this test needs the real server from the Debian package \
         `{debian_package}`; `cargo xtask test` installs it (or: apt-get install -y \
         --no-install-recommends {debian_package})"
    );
}

/// The directory `cargo xtask test` provisions (a Python venv in `venv/`,
/// Node packages in `node/node_modules/`): `$DIALTONE_TEST_ENV`, which the
/// xtask sets, or `target/test-env` in the workspace.
pub fn test_env() -> PathBuf {
    match std::env::var_os("DIALTONE_TEST_ENV").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-env"),
    }
}

/// A child process killed (and reaped) on drop; its log file is printed if
/// it does not come up.
pub struct ChildGuard {
    child: Child,
    name: String,
    log: Option<PathBuf>,
}

impl ChildGuard {
    /// Starts `cmd` with output going to `log` (a file in the test's dir).
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> ChildGuard {
        let out = std::fs::File::create(log).unwrap();
        let err = out.try_clone().unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {name}: {e}"));
        ChildGuard {
            child,
            name: name.to_owned(),
            log: Some(log.to_owned()),
        }
    }

    /// Waits until something accepts TCP on 127.0.0.1:`port`, failing with
    /// the child's log if it exits or takes more than 10 s.
    pub fn wait_for_port(&mut self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}) before listening on {port}:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "{} did not listen on {port} within 10 s:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        self.log
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A certificate and its key, PEM.
pub struct Pem {
    pub cert: String,
    pub key: String,
}

/// A test CA that issues leaf certificates.
pub struct Ca {
    pub pem: String,
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// How a leaf certificate is made.
pub struct Leaf<'a> {
    pub names: &'a [&'a str],
    pub expired: bool,
    pub client: bool,
}

impl Default for Leaf<'_> {
    fn default() -> Self {
        Leaf {
            names: &["localhost", "127.0.0.1"],
            expired: false,
            client: false,
        }
    }
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            cert,
            key,
        }
    }

    pub fn issue(&self, leaf: Leaf<'_>) -> Pem {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = leaf
            .names
            .iter()
            .map(|n| match n.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*n).try_into().unwrap()),
            })
            .collect();
        params.distinguished_name.push(
            DnType::CommonName,
            leaf.names.first().copied().unwrap_or("leaf"),
        );
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![if leaf.client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        if leaf.expired {
            params.not_before = rcgen::date_time_ymd(2001, 1, 1);
            params.not_after = rcgen::date_time_ymd(2002, 1, 1);
        } else {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2100, 1, 1);
        }
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

/// Starts an echo listener on 127.0.0.1 (TLS if `tls`); returns its address.
pub async fn echo_server(tls: Option<ServerTls>) -> SocketAddr {
    echo_server_on(Ipv4Addr::LOCALHOST.into(), tls).await
}

/// The first address `localhost` resolves to here (127.0.0.1 or ::1): a
/// listener there is what a dial of `localhost` (or a proxy's) reaches first.
pub async fn localhost_ip() -> std::net::IpAddr {
    tokio::net::lookup_host("localhost:0")
        .await
        .unwrap()
        .next()
        .unwrap()
        .ip()
}

/// Starts an echo listener on `ip` (TLS if `tls`); returns its address.
pub async fn echo_server_on(ip: std::net::IpAddr, tls: Option<ServerTls>) -> SocketAddr {
    let mut listener = Listener::bind((ip, 0)).await.unwrap();
    if let Some(tls) = tls {
        listener = listener.with_tls(tls);
    }
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok(incoming) = listener.accept().await {
            tokio::spawn(async move {
                let Ok((mut ws, _request)) = incoming.handshake().await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.recv().await {
                    if msg.is_data() && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Dials `url` with `dialer`, sends a text and expects it echoed.
pub async fn round_trip(dialer: &dialtone::Dialer, url: &str) -> dialtone::Result<()> {
    let (mut ws, _) = dialer.dial(url).await?;
    ws.send("ping through").await?;
    match ws.recv().await {
        Some(Ok(Message::Text(t))) => assert_eq!(t.as_str(), "ping through"),
        other => panic!("expected the echo, got {other:?}"),
    }
    ws.close(dialtone::CloseCode::Normal, "").await?;
    Ok(())
}

/// Starts Debian's nginx (single process, in the foreground) with its pid,
/// logs and temporary files in `dir`, serving the `server { … }` blocks
/// given; waits until it listens on `port`.
pub fn start_nginx(dir: &TempDir, servers: &str, port: u16) -> ChildGuard {
    let nginx = require("nginx", "nginx");
    std::fs::create_dir_all(dir.path().join("logs")).unwrap();
    let prefix = dir.path().display();
    let conf = format!(
        r#"
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {prefix}/logs/access.log;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
{servers}
}}
"#
    );
    let conf_path = dir.write("nginx.conf", conf);
    let mut cmd = Command::new(nginx);
    cmd.arg("-c")
        .arg(&conf_path)
        .arg("-p")
        .arg(dir.path())
        .arg("-e")
        .arg(dir.path().join("logs/stderr.log"))
        .arg("-g")
        .arg("daemon off; master_process off;");
    let mut child = ChildGuard::spawn("nginx", cmd, &dir.path().join("nginx.out"));
    child.wait_for_port(port);
    child
}

/// The blocking twin of [`round_trip`]: `dial_blocking`, a text echoed.
pub fn round_trip_blocking(dialer: &dialtone::Dialer, url: &str) -> dialtone::Result<()> {
    let (mut ws, _) = dialer.dial_blocking(url)?;
    ws.send("ping through")?;
    match ws.recv() {
        Some(Ok(Message::Text(t))) => assert_eq!(t.as_str(), "ping through"),
        other => panic!("expected the echo, got {other:?}"),
    }
    ws.close(dialtone::CloseCode::Normal, "")?;
    Ok(())
}

/// [`round_trip`] with each face: `[async, blocking]`. The blocking dial
/// runs on tokio's blocking pool, so that servers on this runtime go on.
pub async fn round_trip_both(dialer: &dialtone::Dialer, url: &str) -> [dialtone::Result<()>; 2] {
    let async_face = round_trip(dialer, url).await;
    let (dialer, url) = (dialer.clone(), url.to_owned());
    let blocking_face = tokio::task::spawn_blocking(move || round_trip_blocking(&dialer, &url))
        .await
        .expect("the blocking dial panicked");
    [async_face, blocking_face]
}

/// Runs `check` on each face's result, naming the face if it panics.
pub fn each_face<T>(results: [T; 2], check: impl Fn(T)) {
    for (face, result) in ["async", "blocking"].into_iter().zip(results) {
        eprintln!("checking the {face} face");
        check(result);
    }
}

/// Starts Debian's apache2 in the foreground (`-X`, one process), with its
/// own config, pid file and logs in `dir`, loading the modules named
/// (`auth_digest` for `mod_auth_digest.so`, …) and serving `body`; waits
/// until it listens on `port`. It never touches the system's service.
pub fn start_apache(dir: &TempDir, modules: &[&str], body: &str, port: u16) -> ChildGuard {
    let apache = require("apache2", "apache2");
    let root = dir.path().display();
    let mut conf = format!(
        "ServerRoot \"{root}\"\nListen 127.0.0.1:{port}\nServerName 127.0.0.1\n\
         PidFile \"{root}/apache.pid\"\nErrorLog \"{root}/error.log\"\nLogLevel info\n\
         DefaultRuntimeDir \"{root}\"\nMutex file:{root} default\n"
    );
    for module in ["mpm_event"].iter().chain(modules) {
        conf.push_str(&format!(
            "LoadModule {module}_module /usr/lib/apache2/modules/mod_{module}.so\n"
        ));
    }
    conf.push_str(body);
    let conf_path = dir.write("apache.conf", conf);
    let mut cmd = Command::new(apache);
    cmd.arg("-f").arg(&conf_path).arg("-X");
    let mut child = ChildGuard::spawn("apache2", cmd, &dir.path().join("apache.out"));
    child.wait_for_port(port);
    child
}

/// A tinyproxy on 127.0.0.1 that may CONNECT only to `allowed_ports`.
pub struct Tinyproxy {
    pub port: u16,
    _child: ChildGuard,
    _dir: TempDir,
}

pub fn tinyproxy(allowed_ports: &[u16], basic_auth: Option<(&str, &str)>) -> Tinyproxy {
    let bin = require("tinyproxy", "tinyproxy");
    let dir = TempDir::new("tinyproxy");
    let port = free_port();
    let d = dir.path().display();
    let mut conf = format!(
        "Port {port}\nListen 127.0.0.1\nTimeout 30\nMaxClients 20\n\
         LogFile \"{d}/tinyproxy.log\"\nLogLevel Info\nPidFile \"{d}/tinyproxy.pid\"\n\
         Allow 127.0.0.1\n"
    );
    // Without ConnectPort lines tinyproxy would allow every port; with
    // them, only these (Debian's default config allows 443 and 563 only).
    for p in allowed_ports {
        conf.push_str(&format!("ConnectPort {p}\n"));
    }
    if let Some((user, password)) = basic_auth {
        conf.push_str(&format!("BasicAuth {user} {password}\n"));
    }
    let conf = dir.write("tinyproxy.conf", conf);
    let mut cmd = Command::new(bin);
    cmd.arg("-d").arg("-c").arg(conf);
    let mut child = ChildGuard::spawn("tinyproxy", cmd, &dir.path().join("tinyproxy.log"));
    child.wait_for_port(port);
    Tinyproxy {
        port,
        _child: child,
        _dir: dir,
    }
}

/// A microsocks SOCKS5 server on 127.0.0.1, with user/password if given.
pub struct Microsocks {
    pub port: u16,
    _child: ChildGuard,
    _dir: TempDir,
}

pub fn microsocks(auth: Option<(&str, &str)>) -> Microsocks {
    let bin = require("microsocks", "microsocks");
    let dir = TempDir::new("microsocks");
    let port = free_port();
    let mut cmd = Command::new(bin);
    cmd.args(["-i", "127.0.0.1", "-p", &port.to_string()]);
    if let Some((user, password)) = auth {
        cmd.args(["-u", user, "-P", password]);
    }
    let mut child = ChildGuard::spawn("microsocks", cmd, &dir.path().join("microsocks.log"));
    child.wait_for_port(port);
    Microsocks {
        port,
        _child: child,
        _dir: dir,
    }
}

/// Like [`round_trip_both`], but hands back each face's [`dialtone::Response`].
pub async fn dial_both(
    dialer: &dialtone::Dialer,
    url: &str,
) -> [dialtone::Result<dialtone::Response>; 2] {
    dial_each([dialer, dialer], url).await
}

/// [`dial_both`] with a dialer for each face: `[async, blocking]`.
pub async fn dial_each(
    [dialer, blocking_dialer]: [&dialtone::Dialer; 2],
    url: &str,
) -> [dialtone::Result<dialtone::Response>; 2] {
    let async_face = async {
        let (mut ws, response) = dialer.dial(url).await?;
        ws.close(dialtone::CloseCode::Normal, "").await?;
        Ok(response)
    }
    .await;
    let (dialer, url) = (blocking_dialer.clone(), url.to_owned());
    let blocking_face = tokio::task::spawn_blocking(move || {
        let (mut ws, response) = dialer.dial_blocking(&url)?;
        ws.close(dialtone::CloseCode::Normal, "")?;
        Ok(response)
    })
    .await
    .expect("the blocking dial panicked");
    [async_face, blocking_face]
}

/// An HTTP responder on 127.0.0.1: answers each connection's first read
/// with `answer(request)`, then closes; returns its `ws://` base URL.
pub async fn http_responder<F>(answer: F) -> String
where
    F: Fn(&str) -> String + Send + Sync + 'static,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let answer = std::sync::Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = tcp.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).into_owned();
                let _ = s.write_all(answer(&req).as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    format!("ws://{addr}")
}

/// A TCP listener on 127.0.0.1 that accepts and never answers; returns its
/// port (the connections are held until the runtime ends).
pub async fn silent_server() -> u16 {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = tcp.accept().await {
            held.push(s);
        }
    });
    port
}
