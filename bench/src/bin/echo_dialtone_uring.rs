//! Echo server on dialtone's io_uring face (`dialtone::uring`), one thread
//! and one ring, like the other servers' single thread.

const NAME: &str = "echo_dialtone_uring";

#[cfg(target_os = "linux")]
struct Echo;

#[cfg(target_os = "linux")]
impl dialtone::uring::Handler for Echo {
    fn on_message(&mut self, ws: &mut dialtone::uring::Ws<'_>, msg: dialtone::Message) {
        // Pings and closes are answered by the library; a send fails only
        // once the connection is closing.
        if msg.is_data() {
            let _ = ws.send(&msg);
        }
    }
}

#[cfg(target_os = "linux")]
fn main() {
    let addr = dialtone_bench::listen_addr(NAME);
    let served = dialtone::uring::Server::bind(addr, 1).and_then(|s| s.run(|| Echo));
    if let Err(e) = served {
        eprintln!("{NAME}: {e}");
        std::process::exit(1);
    }
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("{NAME}: io_uring is Linux only");
    std::process::exit(1);
}
