//! `dialtone completions SHELL`: a completion script, written by
//! `clap_complete` from the same definitions as the parser, so it cannot
//! drift from the options.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use clap::CommandFactory;
use clap_complete::Shell;

const AFTER_LONG_HELP: &str = "\
Examples:
  dialtone completions bash > ~/.local/share/bash-completion/completions/dialtone
  dialtone completions zsh > ~/.zfunc/_dialtone      # with fpath+=(~/.zfunc)
  dialtone completions fish > ~/.config/fish/completions/dialtone.fish";

#[derive(clap::Args)]
#[command(after_long_help = AFTER_LONG_HELP)]
pub(crate) struct CompletionsArgs {
    /// The shell to write the script for.
    shell: Shell,
}

pub(crate) fn completions(args: CompletionsArgs) -> Result<ExitCode> {
    let mut command = crate::Cli::command();
    // Into a buffer first: `generate` panics when it cannot write, and a
    // closed pipe (`| head`) is no reason to.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "dialtone", &mut script);
    match std::io::stdout().write_all(&script) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}
