//! Fixture tests for `render_hba`: each `fixtures/NAME.in` is rendered
//! with the rules of its case and compared with `fixtures/NAME.out`
//! byte for byte. `UPDATE_HBA_FIXTURES=1 cargo test --lib hba` rewrites
//! the `.out` files (then read the diff before committing it).

use super::*;

fn rules(read_write_allowed: bool, fenced_users: &[&str]) -> HbaRules {
    HbaRules {
        servers: vec![
            "10.21.57.65".parse().expect("an address"),
            "fd00::65".parse().expect("an address"),
        ],
        read_write_user: "harw".into(),
        read_only_user: Some("haro".into()),
        read_write_allowed,
        read_only_allowed: true,
        auth_allow: "scram-sha-256".into(),
        auth_deny: "reject".into(),
        fenced_users: fenced_users.iter().map(|u| u.to_string()).collect(),
        why: if read_write_allowed {
            "node_1: production (timeline 1, 3/3 voters)".into()
        } else {
            "node_1: fenced (node_2 holds timeline 2)".into()
        },
    }
}

/// (fixture, rules)
fn cases() -> Vec<(&'static str, &'static str, HbaRules)> {
    vec![
        (
            "debian-default",
            include_str!("../fixtures/debian-default.in"),
            rules(true, &[]),
        ),
        (
            "crlf-no-final-newline",
            include_str!("../fixtures/crlf-no-final-newline.in"),
            rules(false, &["app"]),
        ),
        (
            "existing-block",
            include_str!("../fixtures/existing-block.in"),
            rules(false, &["app", "batch"]),
        ),
        (
            "block-at-end-no-newline",
            include_str!("../fixtures/block-at-end-no-newline.in"),
            rules(true, &[]),
        ),
    ]
}

fn fixture_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/hba/fixtures")
        .join(format!("{name}.out"))
}

#[test]
fn fixtures_render_byte_for_byte() {
    let update = std::env::var_os("UPDATE_HBA_FIXTURES").is_some();
    for (name, input, rules) in cases() {
        let got = render_hba(input, &rules).expect(name);
        let path = fixture_path(name);
        if update {
            std::fs::write(&path, &got).expect("write a fixture");
        }
        let want = std::fs::read_to_string(&path).expect("read a fixture");
        assert_eq!(got, want, "{name}");
    }
}

/// Removes the managed block (as rendered: whole lines), for comparing
/// what is outside it.
fn outside_block(text: &str) -> String {
    let range = find_block(text).expect("well formed").expect("a block");
    format!("{}{}", &text[..range.start], &text[range.end..])
}

#[test]
fn every_byte_outside_the_block_is_kept() {
    for (name, input, rules) in cases() {
        let out = render_hba(input, &rules).expect(name);
        let before = match find_block(input).expect(name) {
            Some(_) => outside_block(input),
            None => input.to_string(),
        };
        assert_eq!(outside_block(&out), before, "{name}");
        // Rendering again with the same rules changes nothing.
        assert_eq!(
            render_hba(&out, &rules).expect(name),
            out,
            "{name}: idempotent"
        );
        // The block comes first when it was inserted.
        if find_block(input).expect(name).is_none() {
            assert!(out.starts_with(BEGIN), "{name}");
        }
    }
}

#[test]
fn block_lines_follow_the_rules() {
    let primary = block_lines(&rules(true, &[]));
    assert!(primary.contains(&"host harw harw 10.21.57.65/32 scram-sha-256".to_string()));
    assert!(primary.contains(&"host haro haro fd00::65/128 scram-sha-256".to_string()));
    let fenced = block_lines(&rules(false, &["app"]));
    assert!(fenced.contains(&"host harw harw 10.21.57.65/32 reject".to_string()));
    assert!(fenced.contains(&"host all app all reject".to_string()));
    assert!(fenced.contains(&"local all app reject".to_string()));
    let mut no_ro = rules(true, &[]);
    no_ro.read_only_user = None;
    assert!(!block_lines(&no_ro).iter().any(|l| l.contains("haro")));
}

#[test]
fn an_ambiguous_block_is_an_error_not_a_guess() {
    let cases = [
        (format!("a\n{BEGIN}\nb\n"), HbaError::Unterminated(2)),
        (format!("a\n{END}\n"), HbaError::StrayEnd(2)),
        (
            format!("{BEGIN}\n{END}\n{BEGIN}\n{END}\n"),
            HbaError::SecondBlock(3),
        ),
        (
            format!("{BEGIN}\n{BEGIN}\n{END}\n"),
            HbaError::Unterminated(2),
        ),
    ];
    for (text, want) in cases {
        assert_eq!(render_hba(&text, &rules(true, &[])), Err(want), "{text:?}");
    }
}

#[test]
fn a_file_with_no_rule_of_its_own_is_left_alone() {
    let rule = "local all postgres peer\n";
    let cases = [
        ("empty", String::new(), Err(HbaError::NoRules)),
        (
            "blank lines",
            "\n \n\t\n".to_string(),
            Err(HbaError::NoRules),
        ),
        (
            "comments",
            "# TYPE DATABASE USER\n  # x\n".to_string(),
            Err(HbaError::NoRules),
        ),
        (
            "the block alone",
            format!("{BEGIN}\nhost harw harw 10.0.0.1/32 reject\n{END}\n"),
            Err(HbaError::NoRules),
        ),
        (
            "the block and comments",
            format!("# a\n{BEGIN}\n{END}\n# b\n"),
            Err(HbaError::NoRules),
        ),
        ("a rule", rule.to_string(), Ok(())),
        (
            "a rule after the block",
            format!("{BEGIN}\n{END}\n{rule}"),
            Ok(()),
        ),
        (
            "a rule before the block",
            format!("{rule}{BEGIN}\n{END}\n"),
            Ok(()),
        ),
        ("an include", "include_dir conf.d\n".to_string(), Ok(())),
        (
            "a rule with no newline",
            "local all all trust".to_string(),
            Ok(()),
        ),
    ];
    for (name, text, want) in cases {
        let got = render_hba(&text, &rules(true, &[])).map(|_| ());
        assert_eq!(got, want, "{name}: {text:?}");
    }
}
