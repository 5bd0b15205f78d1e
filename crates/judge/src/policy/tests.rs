use serde_json::json;

use super::Policy;
use crate::call::{Call, ToolResult};
use crate::catalog::Catalog;
use crate::error::Error;
use crate::ids::{AgentId, Millis, SessionKey};
use crate::judge::Judge;
use crate::pack;
use crate::rules::RuleSet;
use crate::state::{AggregateState, SessionState, StateMut};
use crate::verdict::{Decision, Origin};

fn judge_with(policy: &str) -> Judge {
    let p = Policy::new(&Catalog::default(), "test.cedar", policy).expect("policy loads");
    Judge::new(Catalog::default(), RuleSet::default()).with_policy(p)
}

#[test]
fn the_default_policy_validates_against_the_schema() {
    assert!(Policy::new(&Catalog::default(), pack::POLICY_FILE, pack::POLICY).is_ok());
}

#[test]
fn a_typo_in_an_attribute_is_an_error_with_line_and_column() {
    let src = "permit(principal, action, resource);\n\nforbid(principal, action, resource)\nwhen { context.sesion.risk > 10 };\n";
    let err = Policy::new(&Catalog::default(), "p.cedar", src).expect_err("invalid");
    assert!(matches!(err, Error::Policy { .. }));
    assert_eq!(err.location().file, "p.cedar");
    assert_eq!(err.location().line, 4, "{err}");
    assert!(err.location().column > 1, "{err}");
}

#[test]
fn a_parse_error_names_its_line() {
    let err = Policy::new(
        &Catalog::default(),
        "p.cedar",
        "permit(principal, action, resource);\nforbid(principal action);\n",
    )
    .expect_err("parse error");
    assert_eq!(err.location().line, 2, "{err}");
}

#[test]
fn forbid_overrides_permit_and_annotations_become_the_reason() {
    let j = judge_with(
        r#"permit(principal, action, resource);
@id("no-egress-after-untrusted")
@reason("egress after untrusted content is forbidden")
forbid(principal, action == Action::"call_tool", resource)
when { context.session.labels.contains("untrusted") && resource.labels.contains("egress") };"#,
    );
    let (a, k) = (AgentId::new("bot"), SessionKey::new("s"));
    let (mut s, mut ag) = (SessionState::new(), AggregateState::new());
    let args = json!({"url": "https://news.example"});
    let call = Call::tool(&a, &k, "read_webpage", &args);
    let v = j.judge_call(
        StateMut {
            session: &mut s,
            agent: &mut ag,
            user: None,
        },
        &call,
        Millis(1),
    );
    assert_eq!(v.decision, Decision::Allow);
    let page = json!("hello");
    let _ = j.observe_result(
        StateMut {
            session: &mut s,
            agent: &mut ag,
            user: None,
        },
        &call,
        &v,
        &ToolResult {
            value: &page,
            is_error: false,
        },
        Millis(1),
    );
    let args = json!({"to": "x@y.example", "body": "hi"});
    let call = Call::tool(&a, &k, "send_email", &args);
    let v = j.judge_call(
        StateMut {
            session: &mut s,
            agent: &mut ag,
            user: None,
        },
        &call,
        Millis(2),
    );
    assert_eq!(v.decision, Decision::Deny);
    assert_eq!(v.reasons[0].origin, Origin::Policy);
    assert_eq!(v.reasons[0].rule.as_str(), "no-egress-after-untrusted");
    assert_eq!(
        v.reasons[0].message,
        "egress after untrusted content is forbidden"
    );
}

#[test]
fn without_a_permit_calls_are_denied_by_default() {
    let j = judge_with(r#"permit(principal == Agent::"trusted", action, resource);"#);
    let (a, k) = (AgentId::new("bot"), SessionKey::new("s"));
    let (mut s, mut ag) = (SessionState::new(), AggregateState::new());
    let args = json!({});
    let v = j.judge_call(
        StateMut {
            session: &mut s,
            agent: &mut ag,
            user: None,
        },
        &Call::tool(&a, &k, "read_file", &args),
        Millis(1),
    );
    assert_eq!(v.decision, Decision::Deny);
    assert_eq!(v.reasons[0].rule.as_str(), "policy-default-deny");
}

#[test]
fn behavioural_facts_are_visible_to_the_policy() {
    let j = judge_with(
        r#"permit(principal, action, resource);
@id("no-big-args")
forbid(principal, action, resource) when { context.args_text like "*rm -rf*" || context.destination.new && context.arg_from.contains("injected") };"#,
    );
    let (a, k) = (AgentId::new("bot"), SessionKey::new("s"));
    let (mut s, mut ag) = (SessionState::new(), AggregateState::new());
    let args = json!({"command": "rm -rf build"});
    let v = j.judge_call(
        StateMut {
            session: &mut s,
            agent: &mut ag,
            user: None,
        },
        &Call::tool(&a, &k, "run_shell", &args),
        Millis(1),
    );
    assert_eq!(v.decision, Decision::Deny);
    assert_eq!(v.rule_ids(), vec!["no-big-args"]);
}
