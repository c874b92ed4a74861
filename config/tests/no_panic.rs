//! Nothing panics on user input: arbitrary and mutated configs through `Config::parse`,
//! the edit functions and the SmartOS import.

use proptest::prelude::*;
use ramkey_config::edit::Document;
use ramkey_config::{Config, smartos};

const FULL: &str = include_str!("fixtures/accept/full.toml");
const MINIMAL: &str = include_str!("fixtures/accept/minimal.toml");

/// One change to a text: delete a run of characters, insert text, or duplicate a line.
#[derive(Debug, Clone)]
enum Mutation {
    Delete(usize, usize),
    Insert(usize, String),
    DuplicateLine(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1usize..20).prop_map(|(at, len)| Mutation::Delete(at, len)),
        (any::<usize>(), "[a-z0-9 =\\[\\]\"'.,:/#{}\\n_-]{1,12}|\\PC{1,4}").prop_map(|(at, s)| Mutation::Insert(at, s)),
        any::<usize>().prop_map(Mutation::DuplicateLine),
    ]
}

fn apply(text: &str, mutations: &[Mutation]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for m in mutations {
        match m {
            Mutation::Delete(at, len) if !chars.is_empty() => {
                let start = at % chars.len();
                let end = (start + len).min(chars.len());
                chars.drain(start..end);
            }
            Mutation::Delete(..) => {}
            Mutation::Insert(at, s) => {
                let at = at % (chars.len() + 1);
                chars.splice(at..at, s.chars());
            }
            Mutation::DuplicateLine(n) => {
                let joined: String = chars.iter().collect();
                let lines: Vec<&str> = joined.lines().collect();
                if !lines.is_empty() {
                    let i = n % lines.len();
                    let mut out: Vec<&str> = lines.clone();
                    out.insert(i, lines[i]);
                    chars = out.join("\n").chars().collect();
                }
            }
        }
    }
    chars.into_iter().collect()
}

fn key() -> impl Strategy<Value = String> {
    let seg = prop_oneof![
        Just("nic".to_owned()),
        Just("personality".to_owned()),
        Just("admin".to_owned()),
        Just("web".to_owned()),
        Just("ip".to_owned()),
        Just("gateway".to_owned()),
        Just("settings".to_owned()),
        Just("dns".to_owned()),
        Just("resolvers".to_owned()),
        Just("hostname".to_owned()),
        Just("version".to_owned()),
        "[a-z]{1,6}",
        "\\PC{0,3}",
    ];
    prop::collection::vec(seg, 1..5).prop_map(|segs| segs.join("."))
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("dhcp".to_owned()),
        Just("192.168.1.3/24".to_owned()),
        Just("[\"1.1.1.1\"]".to_owned()),
        Just("{ a = 1 }".to_owned()),
        Just("[[x]]".to_owned()),
        "-?[0-9]{1,12}",
        "\\PC{0,16}",
        "[a-z0-9 =\\[\\]\"'.,:/#{}\\n]{0,20}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn parse_never_panics_on_arbitrary_text(text in "\\PC*|[a-z0-9 =\\[\\]\"'.,:/#{}\\n_-]{0,300}") {
        let _ = Config::parse(&text, "config.toml");
        let _ = smartos::import(&text);
        if let Ok(mut doc) = Document::parse(&text, "config.toml") {
            let _ = doc.set("hostname", "box");
        }
    }

    #[test]
    fn parse_never_panics_on_mutated_configs(
        base in prop_oneof![Just(FULL), Just(MINIMAL)],
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        let text = apply(base, &mutations);
        if let Err(errors) = Config::parse(&text, "config.toml") {
            prop_assert!(!errors.is_empty());
            let shown = errors.to_string();
            prop_assert!(shown.starts_with("config.toml:"), "{}", shown);
        }
    }

    #[test]
    fn edits_never_panic(
        mutations in prop::collection::vec(mutation(), 0..3),
        edits in prop::collection::vec((key(), value(), 0u8..3), 1..6),
    ) {
        let text = apply(FULL, &mutations);
        let Ok(mut doc) = Document::parse(&text, "config.toml") else { return Ok(()) };
        for (k, v, op) in edits {
            let _ = match op {
                0 => doc.get(&k).map(|_| ()),
                1 => doc.set(&k, &v),
                _ => doc.unset(&k).map(|_| ()),
            };
            // Whatever was accepted still reads back as TOML.
            prop_assert!(Document::parse(&doc.to_string(), "config.toml").is_ok());
        }
    }
}
