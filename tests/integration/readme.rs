//! The README's usage lines run, in order, on a fresh project and each succeeds.

use crate::util::{Root, repo};

/// The `agentplane …` lines of the README's tested usage block, comments cut.
fn usage_lines() -> Vec<Vec<String>> {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let start = readme.find("<!-- usage:").expect("README has a marked usage block");
    let block = &readme[start..];
    let body = &block[block.find("```sh\n").unwrap() + 6..];
    let body = &body[..body.find("```").unwrap()];
    body.lines()
        .filter(|l| l.starts_with("agentplane "))
        .map(|l| {
            let cmd = l.split(" # ").next().unwrap().trim();
            cmd.split_whitespace().skip(1).map(str::to_string).collect()
        })
        .collect()
}

#[test]
fn every_usage_line_of_the_readme_succeeds_in_order() {
    let lines = usage_lines();
    assert!(lines.len() >= 10, "the usage block lost its lines: {lines:?}");
    let r = Root::new();
    r.copy_bundle("example-agent");
    for args in lines {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = r.cmd(&args);
        assert_eq!(out.code, 0, "`agentplane {}` failed:\n{}\n{}", args.join(" "), out.stdout, out.stderr);
    }
}
