//! `dialtone completions SHELL`.

mod support;

use support::run;

#[tokio::test]
async fn bash_completions_define_a_function_for_dialtone_and_know_its_subcommands() {
    let run = run(&["completions", "bash"], b"").await;
    assert_eq!(run.code(), 0);
    assert!(run.stdout.contains("_dialtone()"), "{}", run.stdout);
    assert!(run.stdout.contains("complete -F _dialtone"));
    for word in ["bench", "dial", "serve", "--jsonl", "--in-flight"] {
        assert!(run.stdout.contains(word), "{word} missing");
    }
}

#[tokio::test]
async fn zsh_completions_start_with_compdef() {
    let run = run(&["completions", "zsh"], b"").await;
    assert_eq!(run.code(), 0);
    assert!(
        run.stdout.starts_with("#compdef dialtone"),
        "{}",
        run.stdout
    );
}

#[tokio::test]
async fn an_unknown_shell_is_a_usage_error() {
    let run = run(&["completions", "cmd.exe"], b"").await;
    assert_eq!(run.code(), 2);
    assert!(run.stderr.contains("invalid value"), "{}", run.stderr);
}
