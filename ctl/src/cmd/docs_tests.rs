//! Every `pluribusctl` and `pluribus-agent` command line in the docs parses with today's
//! flags, and every fleet file in them is valid: a documented example cannot go stale.
//! (`ctl/tests/newcomer.rs` deploys the fleet files for real.)

use clap::Parser;
use pluribus_common::spec::{parse_fleet_text, FileFormat};
use pluribus_testkit::docs::{commands, doc_blocks};

use super::Cli;

#[test]
fn every_documented_command_parses() {
    let blocks = doc_blocks();
    let ctl = commands(&blocks, "pluribusctl");
    assert!(ctl.len() > 20, "found only {} pluribusctl lines", ctl.len());
    for (at, words) in &ctl {
        if let Err(e) = Cli::try_parse_from(words) {
            panic!("{at}: `{}` does not parse:\n{e}", words.join(" "));
        }
    }
    let agent = commands(&blocks, "pluribus-agent");
    assert!(!agent.is_empty(), "no pluribus-agent line in the docs");
    for (at, words) in &agent {
        if let Err(e) = pluribus_agent::cli::AgentArgs::try_parse_from(words) {
            panic!("{at}: `{}` does not parse:\n{e}", words.join(" "));
        }
    }
}

#[test]
fn every_documented_fleet_file_is_valid() {
    let fleets: Vec<_> = doc_blocks()
        .into_iter()
        .filter(|b| b.lang == "yaml" && b.text.lines().any(|l| l.starts_with("name:")))
        .collect();
    assert!(fleets.len() >= 2, "found only {} fleet files", fleets.len());
    for b in fleets {
        if let Err(e) = parse_fleet_text(&b.at(), &b.text, FileFormat::Yaml, None) {
            panic!("{}: the documented fleet file is rejected: {e}", b.at());
        }
    }
}

#[test]
fn every_documented_scenario_is_valid() {
    use pluribus_client::scenario::{Scenario, Vars};
    let scenarios: Vec<_> = doc_blocks()
        .into_iter()
        .filter(|b| b.lang == "yaml" && b.text.lines().any(|l| l.starts_with("steps:")))
        .collect();
    assert!(!scenarios.is_empty(), "no scenario in the docs");
    for b in scenarios {
        let dir = std::path::Path::new(".");
        if let Err(e) = Scenario::parse(
            &b.at(),
            &b.text,
            FileFormat::Yaml,
            &Vars::default(),
            dir,
            "doc",
        ) {
            panic!("{}: the documented scenario is rejected: {e}", b.at());
        }
    }
}
