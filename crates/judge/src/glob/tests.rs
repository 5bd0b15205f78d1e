use super::Glob;

#[test]
fn star_matches_any_infix() {
    let g = Glob::new("*delete*");
    assert!(g.matches_tool("files", "delete_file"));
    assert!(g.matches_tool("mail", "bulk_delete"));
    assert!(!g.matches_tool("mail", "send_email"));
}

#[test]
fn pattern_with_server_matches_both_parts() {
    let g = Glob::new("mail/send_*");
    assert!(g.matches_tool("mail", "send_email"));
    assert!(!g.matches_tool("chat", "send_email"));
}

#[test]
fn matching_ignores_case_and_question_mark_matches_one_char() {
    let g = Glob::new("Read_?ile");
    assert!(g.matches_tool("x", "read_file"));
    assert!(!g.matches_tool("x", "read_fiile"));
}

#[test]
fn empty_pattern_matches_only_empty_text() {
    assert!(Glob::new("").matches(""));
    assert!(!Glob::new("").matches("a"));
    assert!(Glob::new("*").matches(""));
}
