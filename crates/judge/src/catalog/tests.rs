use serde_json::json;

use super::{Annotations, Catalog, LabelOverride, ToolDef, words};
use crate::label::{Label, LabelSet, LabelSource};

fn labels(tool: &str) -> LabelSet {
    Catalog::default().labels(None, tool)
}

#[test]
fn splits_snake_and_camel_case_names() {
    assert_eq!(words("sendEmail"), vec!["send", "email"]);
    assert_eq!(words("read_file.v2"), vec!["read", "file", "v2"]);
}

#[test]
fn send_email_is_egress_but_read_inbox_is_private_untrusted() {
    assert!(labels("send_email").contains(Label::Egress));
    assert!(!labels("send_email").contains(Label::Untrusted));
    let inbox = labels("read_inbox");
    assert!(inbox.contains(Label::Private) && inbox.contains(Label::Untrusted));
    assert!(!inbox.contains(Label::Egress));
}

#[test]
fn read_email_reads_mail_rather_than_sending_it() {
    let l = labels("read_email");
    assert!(l.contains(Label::Untrusted));
    assert!(!l.contains(Label::Egress));
}

#[test]
fn deleting_a_message_sends_nothing() {
    for tool in ["delete_email", "remove_message", "archive_mail"] {
        let l = labels(tool);
        assert!(l.contains(Label::Destructive), "{tool}: {l}");
        assert!(!l.contains(Label::Egress), "{tool}: {l}");
    }
    // A send is still a send, and so is a send that also deletes.
    assert!(labels("email_user").contains(Label::Egress));
    assert!(labels("send_and_delete_email").contains(Label::Egress));
}

#[test]
fn the_object_of_a_read_decides_not_the_verb() {
    // The filesystem reference server's tools read local files.
    for tool in [
        "search_files",
        "list_allowed_directories",
        "list_directories",
    ] {
        let l = labels(tool);
        assert!(!l.contains(Label::Untrusted), "{tool}: {l}");
        assert!(l.contains(Label::Private), "{tool}: {l}");
    }
    // A search of the web, or of nothing named, is still untrusted.
    for tool in ["search_web", "web_search", "search", "search_products"] {
        assert!(labels(tool).contains(Label::Untrusted), "{tool}");
    }
}

#[test]
fn fetch_url_reads_untrusted_content_and_is_egress() {
    let l = labels("fetch_url");
    assert!(l.contains(Label::Untrusted) && l.contains(Label::Egress));
}

#[test]
fn money_identity_and_destructive_verbs_are_inferred() {
    assert!(labels("transfer_funds").contains(Label::Money));
    assert!(labels("invite_user").contains(Label::Identity));
    assert!(labels("update_user_role").contains(Label::Identity));
    assert!(labels("delete_file").contains(Label::Destructive));
    assert!(labels("get_balance").contains(Label::Financial));
    assert!(labels("get_secret").contains(Label::Secret));
}

#[test]
fn read_only_annotation_removes_inferred_write_labels() {
    let mut c = Catalog::default();
    c.insert(ToolDef {
        server: "files".into(),
        name: "delete_preview".into(),
        description: String::new(),
        input_schema: json!({}),
        annotations: Annotations {
            read_only_hint: Some(true),
            ..Annotations::default()
        },
    });
    assert!(
        !c.labels(Some("files"), "delete_preview")
            .contains(Label::Destructive)
    );
}

#[test]
fn destructive_annotation_adds_destructive_with_its_source() {
    let mut c = Catalog::default();
    c.insert(ToolDef {
        server: "ops".into(),
        name: "rotate".into(),
        description: String::new(),
        input_schema: json!({}),
        annotations: Annotations {
            destructive_hint: Some(true),
            ..Annotations::default()
        },
    });
    let t = c.explain_one(Some("ops"), "rotate");
    assert!(t.sources.contains(&(
        Label::Destructive,
        LabelSource::Annotation("destructiveHint")
    )));
}

#[test]
fn operator_override_wins_and_names_its_glob() {
    let c = Catalog::new(vec![LabelOverride::new(
        "crm/*",
        LabelSet::of(&[Label::Private]),
        LabelSet::of(&[Label::Untrusted]),
    )]);
    let t = c.explain_one(Some("crm"), "lookup_thing");
    assert!(t.labels.contains(Label::Private));
    assert!(
        t.sources
            .contains(&(Label::Private, LabelSource::Config("crm/*".into())))
    );
}

#[test]
fn schema_with_amount_and_iban_is_money() {
    let mut c = Catalog::default();
    c.insert(ToolDef {
        server: "bank".into(),
        name: "make_it_so".into(),
        description: String::new(),
        input_schema: json!({"properties": {"amount": {}, "iban": {}}}),
        annotations: Annotations::default(),
    });
    assert!(c.labels(Some("bank"), "make_it_so").contains(Label::Money));
}

#[test]
fn vendor_prefixed_camel_case_names_are_labelled() {
    assert!(labels("GmailSendEmail").contains(Label::Egress));
    assert!(labels("BankManagerTransferFunds").contains(Label::Money));
    assert!(labels("AugustSmartLockGrantGuestAccess").contains(Label::Identity));
    assert!(labels("VenmoSendMoney").contains(Label::Money));
    assert!(labels("TrafficControlManageTrafficLightState").contains(Label::Write));
}

#[test]
fn a_read_of_unclassified_content_is_untrusted() {
    let l = labels("AmazonGetProductDetails");
    assert!(l.contains(Label::Untrusted), "{l}");
    assert!(!labels("get_customer").contains(Label::Untrusted));
}

#[test]
fn a_vendor_prefix_does_not_hide_the_read_verb() {
    let l = labels("GmailReadEmail");
    assert!(
        l.contains(Label::Untrusted) && !l.contains(Label::Egress),
        "{l}"
    );
    let l = labels("TwitterManagerReadTweet");
    assert!(
        l.contains(Label::Untrusted) && !l.contains(Label::Egress),
        "{l}"
    );
}

#[test]
fn explain_lists_every_tool_sorted_with_label_sources() {
    let mut c = Catalog::default();
    for (server, name) in [
        ("mail", "send_email"),
        ("files", "delete_file"),
        ("mail", "read_inbox"),
    ] {
        c.insert(ToolDef {
            server: server.into(),
            name: name.into(),
            description: String::new(),
            input_schema: json!({}),
            annotations: Annotations::default(),
        });
    }
    let all = c.explain();
    let names: Vec<String> = all
        .iter()
        .map(|t| format!("{}/{}", t.server, t.tool))
        .collect();
    assert_eq!(
        names,
        vec!["files/delete_file", "mail/read_inbox", "mail/send_email"]
    );
    assert!(
        all.iter()
            .all(|t| t.sources.iter().all(|(l, _)| t.labels.contains(*l)))
    );
    assert_eq!(
        c.labels(None, "send_email"),
        c.labels(Some("mail"), "send_email")
    );
}
