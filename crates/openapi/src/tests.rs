use proptest::prelude::*;
use serde_json::{Value, json};

use crate::naming::{is_valid, tool_name};
use crate::select::glob;
use crate::{Api, CallError, Filter, Selection, Spec, SpecError};

const CRM: &str = r##"
openapi: 3.0.3
info: { title: CRM, version: "1" }
paths:
  /customers:
    get:
      operationId: listCustomers
      summary: List customers
      tags: [customers]
      parameters:
        - { name: status, in: query, schema: { type: string, enum: [active, closed] } }
        - { name: tag, in: query, schema: { type: array, items: { type: string } } }
        - { name: ids, in: query, explode: false, schema: { type: array, items: { type: integer } } }
    post:
      operationId: createCustomer
      tags: [customers]
      requestBody:
        required: true
        content:
          application/json:
            schema: { $ref: "#/components/schemas/NewCustomer" }
  /customers/{id}:
    parameters:
      - { name: id, in: path, required: true, schema: { type: string } }
    get:
      operationId: getCustomer
      parameters:
        - { name: id, in: query, schema: { type: string } }
        - { name: X-Trace, in: header, schema: { type: string } }
        - { name: Authorization, in: header, schema: { type: string } }
    delete:
      operationId: deleteCustomer
      tags: [admin]
  /customers/{id}/notes:
    put:
      parameters:
        - { name: id, in: path, required: true, schema: { type: string } }
      requestBody:
        content:
          application/json:
            schema: { type: array, items: { type: string } }
  /payments/{id}/refund:
    post:
      operationId: refundPayment
      parameters:
        - { name: id, in: path, required: true, schema: { type: string } }
      requestBody:
        content:
          application/x-www-form-urlencoded:
            schema:
              type: object
              properties:
                amount: { type: integer }
                metadata: { type: object }
components:
  schemas:
    NewCustomer:
      type: object
      required: [name]
      properties:
        name: { type: string }
        email: { type: string }
        address: { $ref: "#/components/schemas/Address" }
        parent: { $ref: "#/components/schemas/NewCustomer" }
    Address:
      type: object
      properties:
        city: { type: string }
"##;

fn crm() -> Api {
    let spec = Spec::parse("crm.yaml", CRM.as_bytes()).expect("spec parses");
    Api::build(&spec, &Selection::default(), 64).expect("tools build")
}

#[test]
fn every_operation_becomes_a_tool_named_after_its_operation_id() {
    let api = crm();
    let names: Vec<&str> = api.tools().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "listCustomers",
            "createCustomer",
            "getCustomer",
            "deleteCustomer",
            "put_customers_id_notes",
            "refundPayment"
        ]
    );
}

#[test]
fn swagger_2_is_refused_with_a_message_saying_so() {
    let err = Spec::parse("old.json", br#"{"swagger":"2.0","paths":{}}"#).expect_err("refused");
    assert!(matches!(err, SpecError::Swagger2 { .. }));
    assert!(err.to_string().contains("Swagger 2.0"));
    let err = Spec::parse("x.yaml", b"openapi: 4.0.0\npaths: {}\n").expect_err("refused");
    assert!(matches!(err, SpecError::NotOpenApi { .. }));
}

#[test]
fn json_and_yaml_documents_give_the_same_tools() {
    let yaml: Value = serde_yaml::from_str(CRM).expect("yaml");
    let json_text = serde_json::to_vec(&yaml).expect("json");
    let spec = Spec::parse("crm.json", &json_text).expect("json spec");
    let api = Api::build(&spec, &Selection::default(), 64).expect("tools");
    let crm = crm();
    for (a, b) in api.tools().iter().zip(crm.tools()) {
        assert_eq!(a.name, b.name);
        assert_eq!(a.definition_digest, b.definition_digest);
    }
}

#[test]
fn path_query_header_and_body_arguments_never_share_a_key() {
    let api = crm();
    let t = api.tool("getCustomer").expect("tool");
    let props = t.input_schema["properties"].as_object().expect("props");
    let keys: Vec<&String> = props.keys().collect();
    // `id` is in the path and in the query: the second is qualified.
    assert!(keys.contains(&&"id".to_string()));
    assert!(keys.contains(&&"query_id".to_string()));
    // Credentials are the gateway's: no `Authorization` argument.
    assert!(!keys.iter().any(|k| k.eq_ignore_ascii_case("authorization")));
    let req = t
        .request(&json!({"id": "a/b?c", "query_id": "q 1", "X-Trace": "t"}))
        .expect("request");
    assert_eq!(req.path_and_query, "/customers/a%2Fb%3Fc?id=q%201");
    assert_eq!(req.headers, vec![("X-Trace".to_string(), "t".to_string())]);
}

#[test]
fn object_bodies_are_flattened_and_refs_resolved_with_recursion_bounded() {
    let api = crm();
    let t = api.tool("createCustomer").expect("tool");
    let props = &t.input_schema["properties"];
    assert_eq!(props["address"]["properties"]["city"]["type"], "string");
    assert_eq!(t.input_schema["required"], json!(["name"]));
    // The recursive `parent` ends in an open schema instead of looping.
    let mut depth = 0;
    let mut p = &props["parent"];
    while p["properties"]["parent"].is_object() {
        p = &p["properties"]["parent"];
        depth += 1;
    }
    assert!(depth < crate::spec::MAX_REF_DEPTH + 1);
    let req = t
        .request(&json!({"name": "Ada", "address": {"city": "Zürich"}}))
        .expect("request");
    assert_eq!(req.method, "POST");
    let (ct, body) = req.body.expect("body");
    assert_eq!(ct, "application/json");
    let body: Value = serde_json::from_slice(&body).expect("json body");
    assert_eq!(body, json!({"name": "Ada", "address": {"city": "Zürich"}}));
}

#[test]
fn a_non_object_body_goes_under_the_body_key() {
    let api = crm();
    let t = api.tool("put_customers_id_notes").expect("tool");
    let req = t
        .request(&json!({"id": "7", "body": ["a", "b"]}))
        .expect("request");
    assert_eq!(req.body.expect("body").1, br#"["a","b"]"#.to_vec());
}

#[test]
fn query_arrays_explode_or_join_as_the_spec_says() {
    let api = crm();
    let t = api.tool("listCustomers").expect("tool");
    let req = t
        .request(&json!({"status": "active", "tag": ["a&b", "c"], "ids": [1, 2]}))
        .expect("request");
    assert_eq!(
        req.path_and_query,
        "/customers?status=active&tag=a%26b&tag=c&ids=1,2"
    );
}

#[test]
fn form_bodies_encode_nested_keys() {
    let api = crm();
    let t = api.tool("refundPayment").expect("tool");
    let req = t
        .request(&json!({"id": "pi_1", "amount": 5, "metadata": {"why": "late"}}))
        .expect("request");
    let (ct, body) = req.body.expect("body");
    assert_eq!(ct, "application/x-www-form-urlencoded");
    assert_eq!(
        String::from_utf8(body).expect("utf8"),
        "amount=5&metadata%5Bwhy%5D=late"
    );
}

#[test]
fn missing_unknown_and_misshapen_arguments_are_refused() {
    let api = crm();
    let t = api.tool("getCustomer").expect("tool");
    assert_eq!(t.request(&json!({})), Err(CallError::Missing("id".into())));
    assert_eq!(
        t.request(&json!({"id": "1", "Authorization": "Bearer x"})),
        Err(CallError::Unknown("Authorization".into()))
    );
    assert!(matches!(
        t.request(&json!({"id": {"a": 1}})),
        Err(CallError::Invalid { .. })
    ));
    assert!(matches!(
        t.request(&json!({"id": "1", "X-Trace": "a\r\nEvil: 1"})),
        Err(CallError::Invalid { .. })
    ));
}

#[test]
fn annotations_and_labels_follow_the_method_and_the_words() {
    let api = crm();
    let list = api.list();
    let by = |n: &str| {
        list["tools"]
            .as_array()
            .and_then(|a| a.iter().find(|t| t["name"] == n))
            .cloned()
            .expect("listed")
    };
    assert_eq!(by("listCustomers")["annotations"]["readOnlyHint"], true);
    assert_eq!(by("deleteCustomer")["annotations"]["destructiveHint"], true);
    assert_eq!(
        by("createCustomer")["annotations"]["destructiveHint"],
        false
    );
    let labels = |n: &str| api.tool(n).expect("tool").labels.clone();
    assert_eq!(labels("listCustomers"), ["private"]);
    assert!(labels("deleteCustomer").contains(&"destructive"));
    assert!(labels("refundPayment").contains(&"money"));
    // An `email` property on a writing operation is a destination.
    assert!(labels("createCustomer").contains(&"egress"));
}

#[test]
fn the_description_names_method_and_path_so_a_changed_method_changes_the_pin() {
    let api = crm();
    let t = api.tool("deleteCustomer").expect("tool");
    assert!(t.description.starts_with("DELETE /customers/{id}"));
    let changed = CRM.replace(
        "    delete:\n      operationId: deleteCustomer",
        "    patch:\n      operationId: deleteCustomer",
    );
    let spec = Spec::parse("crm.yaml", changed.as_bytes()).expect("spec");
    let api2 = Api::build(&spec, &Selection::default(), 64).expect("tools");
    let t2 = api2.tool("deleteCustomer").expect("tool");
    assert_ne!(t.definition_digest, t2.definition_digest);
    assert_ne!(api.spec_digest(), api2.spec_digest());
    // Untouched operations keep their digest.
    assert_eq!(
        api.tool("listCustomers").expect("t").definition_digest,
        api2.tool("listCustomers").expect("t").definition_digest
    );
}

#[test]
fn selection_filters_by_tag_glob_method_and_path_and_the_cap_is_an_error() {
    let spec = Spec::parse("crm.yaml", CRM.as_bytes()).expect("spec");
    let sel = Selection {
        include: Filter {
            paths: vec!["/customers*".into()],
            ..Filter::default()
        },
        exclude: Filter {
            tags: vec!["admin".into()],
            ..Filter::default()
        },
        max_tools: 10,
    };
    let api = Api::build(&spec, &sel, 64).expect("tools");
    let names: Vec<&str> = api.tools().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "listCustomers",
            "createCustomer",
            "getCustomer",
            "put_customers_id_notes"
        ]
    );
    let sel = Selection {
        include: Filter {
            operations: vec!["*Customer".into()],
            methods: vec!["GET".into(), "delete".into()],
            ..Filter::default()
        },
        ..Selection::default()
    };
    let names: Vec<String> = Api::build(&spec, &sel, 64)
        .expect("tools")
        .tools()
        .iter()
        .map(|t| t.name.clone())
        .collect();
    assert_eq!(names, ["getCustomer", "deleteCustomer"]);
    let capped = Selection {
        max_tools: 3,
        ..Selection::default()
    };
    let err = Api::build(&spec, &capped, 64).expect_err("refused");
    assert!(
        err.to_string()
            .contains("selects 6 operations, more than `max_tools: 3`"),
        "{err}"
    );
}

#[test]
fn long_and_colliding_operation_ids_get_distinct_stable_short_names() {
    let long_a =
        "getTheVeryLongNameOfAnOperationThatSomeGeneratorProducedForCustomersByRegionAndStatus";
    let long_b =
        "getTheVeryLongNameOfAnOperationThatSomeGeneratorProducedForCustomersByRegionAndOwner";
    let a = tool_name(Some(long_a), "get", "/a", 50);
    let b = tool_name(Some(long_b), "get", "/b", 50);
    assert!(a.len() <= 50 && b.len() <= 50);
    assert_ne!(a, b);
    assert_eq!(a, tool_name(Some(long_a), "get", "/a", 50));
    // Invalid characters are replaced, and the change is marked by a hash
    // so `users.get` and `users_get` stay apart.
    let dotted = tool_name(Some("users.get"), "get", "/u", 64);
    assert!(is_valid(&dotted) && dotted != "users_get", "{dotted}");
    assert_eq!(
        tool_name(None, "GET", "/users/{id}/roles", 64),
        "get_users_id_roles"
    );
}

#[test]
fn a_dangling_ref_is_an_error_naming_the_operation() {
    let doc = r##"{"openapi":"3.1.0","paths":{"/x":{"post":{"operationId":"x","requestBody":{"$ref":"#/components/requestBodies/Nope"}}}}}"##;
    let spec = Spec::parse("x.json", doc.as_bytes()).expect("spec");
    let err = Api::build(&spec, &Selection::default(), 64).expect_err("refused");
    assert!(
        err.to_string().contains("#/components/requestBodies/Nope"),
        "{err}"
    );
    assert!(err.to_string().contains("POST /x"), "{err}");
}

#[test]
fn responses_become_results_with_errors_marked_and_trimmed() {
    let ok = crate::response::to_result(200, "OK", Some("application/json"), br#"{"id":1}"#);
    assert_eq!(ok["structuredContent"], json!({"id": 1}));
    assert_eq!(ok["isError"], false);
    assert_eq!(ok["_meta"]["castellan/http"]["status"], 200);
    let list = crate::response::to_result(200, "OK", None, b"[1,2]");
    assert_eq!(list["structuredContent"], json!({"result": [1, 2]}));
    let big = "x".repeat(10_000);
    let err = crate::response::to_result(
        503,
        "Service Unavailable",
        Some("text/plain"),
        big.as_bytes(),
    );
    assert_eq!(err["isError"], true);
    let text = err["content"][0]["text"].as_str().expect("text");
    assert!(text.starts_with("HTTP 503 Service Unavailable: xxx"));
    assert!(text.chars().count() < 2100);
}

proptest! {
    #[test]
    fn names_are_valid_short_and_deterministic(id in "\\PC{0,120}", budget in 16usize..80) {
        let a = tool_name(Some(&id), "post", "/p", budget);
        prop_assert!(is_valid(&a), "{a:?}");
        prop_assert!(a.len() <= budget);
        prop_assert_eq!(&a, &tool_name(Some(&id), "post", "/p", budget));
    }

    #[test]
    fn distinct_operation_ids_get_distinct_names(a in "[A-Za-z_.]{1,90}", b in "[A-Za-z_.]{1,90}") {
        prop_assume!(a != b);
        prop_assert_ne!(tool_name(Some(&a), "get", "/", 40), tool_name(Some(&b), "get", "/", 40));
    }

    #[test]
    fn a_path_argument_never_escapes_its_segment(v in "\\PC{0,40}") {
        let api = crm();
        let t = api.tool("deleteCustomer").expect("tool");
        let req = t.request(&json!({"id": v})).expect("request");
        let rest = req.path_and_query.strip_prefix("/customers/").expect("prefix");
        prop_assert!(!rest.contains('/') && !rest.contains('?') && !rest.contains('#'));
    }

    #[test]
    fn a_query_argument_never_adds_a_parameter_or_a_header_line(v in "\\PC{0,40}") {
        let api = crm();
        let t = api.tool("listCustomers").expect("tool");
        let req = t.request(&json!({"status": v})).expect("request");
        let query = req.path_and_query.split_once('?').map(|(_, q)| q).unwrap_or_default();
        prop_assert_eq!(query.split('&').count(), 1);
        prop_assert!(query.starts_with("status=") && !query[7..].contains('='));
        prop_assert!(!req.path_and_query.contains(['\r', '\n', ' ', '#']));
    }

    /// Fuzz-style: arbitrary bytes and arbitrary JSON shapes never panic
    /// the parser or the tool builder.
    #[test]
    fn the_spec_parser_never_panics_on_arbitrary_input(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        if let Ok(spec) = Spec::parse("fuzz", &bytes) {
            let _ = Api::build(&spec, &Selection::default(), 64);
        }
    }

    #[test]
    fn the_tool_builder_never_panics_on_odd_operations(doc in arb_doc()) {
        let text = serde_json::to_vec(&doc).expect("json");
        if let Ok(spec) = Spec::parse("fuzz", &text)
            && let Ok(api) = Api::build(&spec, &Selection::default(), 64)
        {
            for t in api.tools() {
                let _ = t.request(&json!({"id": "1", "body": {"a": [1, {"b": null}]}}));
            }
        }
    }

    #[test]
    fn globs_match_like_the_simple_recursive_definition(p in "[ab*?]{0,8}", t in "[ab]{0,8}") {
        prop_assert_eq!(glob(&p, &t), reference_glob(p.as_bytes(), t.as_bytes()));
    }
}

fn reference_glob(p: &[u8], t: &[u8]) -> bool {
    match (p.first(), t.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            reference_glob(&p[1..], t) || (!t.is_empty() && reference_glob(p, &t[1..]))
        }
        (Some(b'?'), Some(_)) => reference_glob(&p[1..], &t[1..]),
        (Some(a), Some(b)) if a == b => reference_glob(&p[1..], &t[1..]),
        _ => false,
    }
}

/// OpenAPI-shaped documents with random parameters, bodies and `$ref`s
/// (some dangling, some cyclic).
fn arb_doc() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(json!({"type": "string"})),
        Just(json!({"$ref": "#/components/schemas/A"})),
        Just(json!({"$ref": "#/components/schemas/Missing"})),
        Just(json!(null)),
        Just(json!([1, 2])),
    ];
    let schema = leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            proptest::collection::btree_map("[a-z]{1,3}", inner.clone(), 0..4)
                .prop_map(|m| json!({"type": "object", "properties": m})),
            inner
                .clone()
                .prop_map(|i| json!({"type": "array", "items": i})),
            inner.prop_map(|i| json!({"allOf": [i]})),
        ]
    });
    let param = (
        prop_oneof![
            Just("path"),
            Just("query"),
            Just("header"),
            Just("cookie"),
            Just("bogus")
        ],
        "[a-z]{1,3}",
        schema.clone(),
    )
        .prop_map(|(loc, name, s)| json!({"name": name, "in": loc, "schema": s}));
    (
        proptest::collection::vec(param, 0..4),
        schema.clone(),
        schema,
        prop_oneof![Just("get"), Just("post"), Just("delete")],
        "/[a-z{}]{0,6}",
    )
        .prop_map(|(params, body, comp, method, path)| {
            json!({
                "openapi": "3.1.0",
                "paths": { path: { method: {
                    "parameters": params,
                    "requestBody": {"content": {"application/json": {"schema": body}}}
                }}},
                "components": {"schemas": {"A": comp}}
            })
        })
}
