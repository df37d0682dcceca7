//! `cargo xtask`: the one command that makes a bare machine ready for
//! dialtone's tests and runs them.
//!
//! - `cargo xtask test [ARGS]`: installs what is missing (Debian packages
//!   with apt-get, the Python venv, the Node packages), then runs
//!   `cargo test --workspace -j2 ARGS` and exits with its status.
//! - `cargo xtask provision`: the same set-up, without running the tests.
//! - `cargo xtask browser`: Chromium and Node, then `tests/browser/run.sh`
//!   (which installs playwright-core with `npm ci`).
//!
//! Everything provisioned lives in `target/test-env/` (or `$DIALTONE_TEST_ENV`),
//! which is handed to the tests as `DIALTONE_TEST_ENV`. Each step checks
//! first and does nothing when its part is already there, so a second run
//! starts the tests at once. A test whose program cannot be had still fails
//! (there are no silent skips): this command is what makes them pass.

use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

const USAGE: &str = "\
usage: cargo xtask <command> [args]

  test [ARGS]   install what the tests need (only what is missing), then
                cargo test --workspace -j2 ARGS
  provision     install what the tests need, run nothing
  browser       install Chromium and Node, then run tests/browser/run.sh

What `test` installs when it is missing:
  Debian (apt-get, as root): nginx tinyproxy microsocks apache2 haproxy,
    python3-venv (when `python3 -m venv` cannot work), nodejs npm (when node is missing)
  target/test-env/venv: a Python venv with xtask/python/requirements.txt
  target/test-env/node: the npm packages of xtask/node/package-lock.json (npm ci)
DIALTONE_TEST_ENV=DIR puts the venv and the Node packages in DIR instead.";

/// Programs the tests start, each with the Debian package that has it.
const SERVERS: [(&str, &str); 5] = [
    ("nginx", "nginx"),
    ("tinyproxy", "tinyproxy"),
    ("microsocks", "microsocks"),
    ("apache2", "apache2"),
    ("haproxy", "haproxy"),
];

/// Services Debian starts when it installs these packages; the tests start
/// their own instances on free ports, so the system ones are stopped.
const SERVICES: [&str; 4] = ["nginx", "tinyproxy", "apache2", "haproxy"];

fn main() -> ExitCode {
    let mut args = env::args_os().skip(1);
    let command = args.next();
    let rest: Vec<OsString> = args.collect();
    let root = workspace_root();
    match command.as_ref().and_then(|c| c.to_str()) {
        Some("test") => {
            let test_env = timed_provision(&root);
            run_tests(&root, &test_env, &rest)
        }
        Some("provision") => {
            timed_provision(&root);
            ExitCode::SUCCESS
        }
        Some("browser") => browser(&root),
        Some("help" | "-h" | "--help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("xtask: unknown command `{other}`\n\n{USAGE}");
            ExitCode::from(2)
        }
        None => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn workspace_root() -> PathBuf {
    // xtask/ sits at the top of the workspace.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Where the venv and the Node packages go: `$DIALTONE_TEST_ENV`, or
/// `target/test-env` in the workspace (absolute either way: the tests run
/// in each crate's directory).
fn test_env_dir(root: &Path) -> PathBuf {
    match env::var_os("DIALTONE_TEST_ENV").filter(|v| !v.is_empty()) {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                env::current_dir().unwrap_or_default().join(dir)
            }
        }
        None => root.join("target/test-env"),
    }
}

fn say(line: &str) {
    eprintln!("xtask: {line}");
}

/// [`provision`], saying how long it took when it had something to do.
fn timed_provision(root: &Path) -> PathBuf {
    let start = std::time::Instant::now();
    let test_env = provision(root);
    let took = start.elapsed();
    if took.as_secs() >= 2 {
        say(&format!("set-up took {} s", took.as_secs()));
    }
    test_env
}

/// Makes everything the tests need present; returns the test-env dir.
fn provision(root: &Path) -> PathBuf {
    let test_env = test_env_dir(root);
    let venv = test_env.join("venv");
    let requirements = root.join("xtask/python/requirements.txt");
    let venv_ready = venv_ok(&venv, &requirements);

    let mut packages: Vec<&str> = Vec::new();
    for (program, package) in SERVERS {
        if find_program(program).is_none() {
            packages.push(package);
        }
    }
    // Checked even when our venv is there: the conformance run makes its own.
    if !runs("python3", &["--version"]) {
        packages.extend(["python3", "python3-venv"]);
    } else if !runs("python3", &["-c", "import ensurepip, venv"]) {
        packages.push("python3-venv");
    }
    if !runs("node", &["--version"]) || !runs("npm", &["--version"]) {
        packages.extend(["nodejs", "npm"]);
    }
    apt_install(&packages);

    if !venv_ready {
        make_venv(&venv, &requirements);
    }
    install_node_packages(&root.join("xtask/node"), &test_env.join("node"));
    if packages.is_empty() && venv_ready {
        say(&format!(
            "test environment ready in {} (nothing to install)",
            test_env.display()
        ));
    }
    test_env
}

/// `program` on PATH or in the sbin directories (Debian puts the servers in
/// /usr/sbin, which is not on every user's PATH).
fn find_program(program: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Whether `program args` runs and exits 0 (output discarded).
fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}

/// Runs `cmd`, showing its output only if it fails; returns success.
fn run_quietly(cmd: &mut Command, what: &str) -> bool {
    match cmd.stdin(Stdio::null()).output() {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            say(&format!("{what} failed ({})", out.status));
            eprint!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            false
        }
        Err(e) => {
            say(&format!("{what}: cannot run it: {e}"));
            false
        }
    }
}

/// Installs `packages` with apt-get when we are root; otherwise says what is
/// missing and how to install it, and goes on (the tests that need them
/// then fail, naming the package).
fn apt_install(packages: &[&str]) {
    if packages.is_empty() {
        return;
    }
    let list = packages.join(" ");
    if !is_root() {
        say(&format!(
            "not root, so these Debian packages are not installed: {list}\n       \
             install them with: sudo apt-get install -y --no-install-recommends {list}\n       \
             (the tests that need them will fail until then)"
        ));
        return;
    }
    say(&format!("installing Debian packages: {list}"));
    let apt = |args: &[&str]| {
        let mut cmd = Command::new("apt-get");
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    };
    if !run_quietly(&mut apt(&["update", "-qq"]), "apt-get update") {
        say("going on with the package lists as they are");
    }
    let mut install = apt(&["install", "-y", "-qq", "--no-install-recommends"]);
    install.args(packages);
    if !run_quietly(&mut install, &format!("apt-get install {list}")) {
        say("the tests that need these packages will fail");
        return;
    }
    for service in SERVICES.iter().filter(|s| packages.contains(s)) {
        // Ignored when there is no init system to ask: then nothing started.
        let _ = Command::new("service")
            .args([service, "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Whether `venv`'s python has every `name==version` of `requirements`.
fn venv_ok(venv: &Path, requirements: &Path) -> bool {
    const CHECK: &str = "\
import importlib.metadata as m, sys
for line in open(sys.argv[1]):
    line = line.split('#')[0].strip()
    if not line:
        continue
    name, _, want = line.partition('==')
    try:
        have = m.version(name.strip())
    except m.PackageNotFoundError:
        sys.exit(1)
    if want and have != want.strip():
        sys.exit(1)
";
    Command::new(venv.join("bin/python"))
        .args(["-c", CHECK])
        .arg(requirements)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A fresh venv at `venv` with `requirements` installed from PyPI. Made in
/// place (not moved there afterwards) so that its scripts' `#!` lines point
/// at it; a half-made one is removed so that the next run starts again.
fn make_venv(venv: &Path, requirements: &Path) {
    let python = env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let pinned = std::fs::read_to_string(requirements)
        .unwrap_or_default()
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    say(&format!(
        "making the Python venv {} ({pinned})",
        venv.display()
    ));
    let _ = std::fs::remove_dir_all(venv);
    if let Some(parent) = venv.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let made = run_quietly(
        Command::new(&python).args(["-m", "venv"]).arg(venv),
        &format!("{python} -m venv"),
    ) && run_quietly(
        Command::new(venv.join("bin/python"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--timeout",
                "60",
                "-r",
            ])
            .arg(requirements),
        &format!("pip install {pinned}"),
    );
    if made && venv_ok(venv, requirements) {
        return;
    }
    let _ = std::fs::remove_dir_all(venv);
    say("no Python venv: the interop tests will fail");
}

/// `npm ci` of `source`'s package.json and package-lock.json into `dir`,
/// unless `dir` already holds an install of that very lock file.
fn install_node_packages(source: &Path, dir: &Path) {
    let lock = std::fs::read(source.join("package-lock.json")).unwrap_or_default();
    let installed = std::fs::read(dir.join("package-lock.json")).ok();
    if installed.as_deref() == Some(&lock[..])
        && dir.join("node_modules/.package-lock.json").exists()
    {
        return;
    }
    let names = std::fs::read_to_string(source.join("package.json"))
        .ok()
        .and_then(|json| {
            let deps = json.split("\"dependencies\"").nth(1)?;
            let body = deps.split('{').nth(1)?.split('}').next()?;
            Some(body.split_whitespace().collect::<Vec<_>>().join(" "))
        })
        .unwrap_or_default();
    say(&format!(
        "installing Node packages into {} ({names})",
        dir.display()
    ));
    if std::fs::create_dir_all(dir).is_err()
        || std::fs::copy(source.join("package.json"), dir.join("package.json")).is_err()
        || std::fs::copy(
            source.join("package-lock.json"),
            dir.join("package-lock.json"),
        )
        .is_err()
    {
        say(&format!("cannot write {}", dir.display()));
        return;
    }
    let ok = run_quietly(
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(dir),
        "npm ci",
    );
    if !ok {
        // So that the next run tries again.
        let _ = std::fs::remove_file(dir.join("package-lock.json"));
        say("no Node packages: the tests that use them will fail");
    }
}

/// `cargo test --workspace -j2 ARGS`, with the test env handed over.
fn run_tests(root: &Path, test_env: &Path, args: &[OsString]) -> ExitCode {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let args = test_args(args);
    say(&format!(
        "DIALTONE_TEST_ENV={} cargo {}",
        test_env.display(),
        args.iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    ));
    exit_with(
        Command::new(cargo)
            .args(&args)
            .current_dir(root)
            .env("DIALTONE_TEST_ENV", test_env)
            .status(),
    )
}

/// `test --workspace -j2 ARGS`, leaving out `--workspace` when ARGS choose
/// packages and `-j2` when they choose a number of jobs (flags after `--`
/// are the test binaries' and do not count).
fn test_args(args: &[OsString]) -> Vec<OsString> {
    let ours: Vec<&str> = args
        .iter()
        .take_while(|a| *a != "--")
        .filter_map(|a| a.to_str())
        .collect();
    let has = |flags: &[&str]| {
        ours.iter().any(|a| {
            flags.iter().any(|f| {
                a == f || a.starts_with(&format!("{f}=")) || (f.len() == 2 && a.starts_with(f))
            })
        })
    };
    let mut out: Vec<OsString> = vec!["test".into()];
    if !has(&["-p", "--package", "--workspace", "--manifest-path"]) {
        out.push("--workspace".into());
    }
    if !has(&["-j", "--jobs"]) {
        out.push("-j2".into());
    }
    out.extend(args.iter().cloned());
    out
}

/// Chromium and Node for the browser test, then the test itself.
fn browser(root: &Path) -> ExitCode {
    let mut packages = Vec::new();
    if !Path::new("/usr/bin/chromium").is_file() {
        packages.extend(["chromium", "fonts-dejavu-core"]);
    }
    if !runs("node", &["--version"]) || !runs("npm", &["--version"]) {
        packages.extend(["nodejs", "npm"]);
    }
    apt_install(&packages);
    exit_with(
        Command::new("bash")
            .arg(root.join("tests/browser/run.sh"))
            .current_dir(root)
            .status(),
    )
}

fn exit_with(status: std::io::Result<std::process::ExitStatus>) -> ExitCode {
    match status {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(s) => ExitCode::from(s.code().and_then(|c| u8::try_from(c).ok()).unwrap_or(1)),
        Err(e) => {
            say(&format!("cannot run it: {e}"));
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_args;

    fn args(line: &str) -> Vec<String> {
        let given: Vec<std::ffi::OsString> = line.split_whitespace().map(Into::into).collect();
        test_args(&given)
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn runs_the_whole_workspace_with_two_jobs_by_default() {
        assert_eq!(args(""), ["test", "--workspace", "-j2"]);
    }

    #[test]
    fn chosen_packages_replace_the_workspace() {
        assert_eq!(
            args("-p dialtone --test proxy"),
            ["test", "-j2", "-p", "dialtone", "--test", "proxy"]
        );
        assert_eq!(args("--package=dialtone")[1], "-j2");
        assert_eq!(args("-pdialtone")[1], "-j2");
    }

    #[test]
    fn chosen_jobs_replace_two_jobs() {
        assert_eq!(args("-j4"), ["test", "--workspace", "-j4"]);
        assert_eq!(args("--jobs 1"), ["test", "--workspace", "--jobs", "1"]);
    }

    #[test]
    fn flags_for_the_test_binaries_do_not_count() {
        assert_eq!(
            args("-- -p --nocapture"),
            ["test", "--workspace", "-j2", "--", "-p", "--nocapture"]
        );
    }
}
