use proptest::prelude::*;

use super::*;

#[test]
fn parses_a_request_and_keeps_params_raw() {
    let env = Envelope::parse(br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x","arguments":{"n":1.50}}}"#)
        .expect("valid request");
    assert_eq!(env.kind, Kind::Request);
    assert_eq!(env.id.as_ref().map(RequestId::as_json), Some("7"));
    assert_eq!(env.method(), "tools/call");
    assert!(
        env.params
            .as_ref()
            .map(|p| p.get().contains("1.50"))
            .unwrap_or(false)
    );
}

#[test]
fn string_ids_are_echoed_byte_for_byte() {
    let env = Envelope::parse(br#"{"jsonrpc":"2.0","id":"a\u0062c","result":{}}"#)
        .expect("valid response");
    assert_eq!(env.kind, Kind::Result);
    let id = env.id.expect("id");
    assert_eq!(id.as_json(), r#""a\u0062c""#);
    let out = Envelope::result_bytes(&id, &empty_object());
    assert_eq!(out, br#"{"jsonrpc":"2.0","id":"a\u0062c","result":{}}"#);
}

#[test]
fn notifications_have_no_id() {
    let env = Envelope::parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
        .expect("valid");
    assert_eq!(env.kind, Kind::Notification);
    assert!(env.id.is_none());
}

#[test]
fn malformed_json_is_a_parse_error() {
    let err = Envelope::parse(b"{\"jsonrpc\":\"2.0\",").expect_err("truncated");
    assert_eq!(err.code, PARSE_ERROR);
    let err = Envelope::parse(b"not json").expect_err("garbage");
    assert_eq!(err.code, PARSE_ERROR);
}

#[test]
fn wrong_version_or_shape_is_an_invalid_request_that_keeps_the_id() {
    let err =
        Envelope::parse(br#"{"jsonrpc":"1.0","id":3,"method":"ping"}"#).expect_err("bad version");
    assert_eq!(err.code, INVALID_REQUEST);
    assert_eq!(err.id.as_ref().map(RequestId::as_json), Some("3"));
    let err = Envelope::parse(br#"{"jsonrpc":"2.0","id":3}"#).expect_err("no method");
    assert_eq!(err.code, INVALID_REQUEST);
    let err =
        Envelope::parse(br#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#).expect_err("object id");
    assert_eq!(err.code, INVALID_REQUEST);
    let err = Envelope::parse(br#"{"jsonrpc":"2.0","id":1,"method":"ping","params":3}"#)
        .expect_err("scalar params");
    assert_eq!(err.code, INVALID_REQUEST);
    let err =
        Envelope::parse(br#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#).expect_err("null id");
    assert_eq!(err.code, INVALID_REQUEST);
}

#[test]
fn batches_are_refused_as_invalid_requests() {
    let err = Envelope::parse(br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#).expect_err("batch");
    assert_eq!(err.code, INVALID_REQUEST);
}

#[test]
fn raw_object_rewrites_one_field_and_keeps_the_rest() {
    let mut obj: RawObject = serde_json::from_str(
        r#"{"name":"mail__send","arguments":{"to":"a@b.c"},"_meta":{"progressToken":5}}"#,
    )
    .expect("object");
    obj.set_str("name", "send");
    assert_eq!(
        obj.to_raw().get(),
        r#"{"name":"send","arguments":{"to":"a@b.c"},"_meta":{"progressToken":5}}"#
    );
}

#[test]
fn raw_object_refuses_duplicate_keys() {
    assert!(serde_json::from_str::<RawObject>(r#"{"name":"a","name":"b"}"#).is_err());
}

#[test]
fn error_responses_serialise_with_null_id_when_unknown() {
    let out = ErrorObject::new(PARSE_ERROR, "parse error").to_response(None);
    let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
    assert_eq!(v["id"], serde_json::Value::Null);
    assert_eq!(v["error"]["code"], PARSE_ERROR);
}

proptest! {
    #[test]
    fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = Envelope::parse(&bytes);
    }

    #[test]
    fn requests_round_trip(id in 0u64..u64::MAX, method in "[a-z/_]{1,20}", n in any::<i64>(), s in ".{0,20}") {
        let params = to_raw(&serde_json::json!({"n": n, "s": s}));
        let id = RequestId::number(id);
        let bytes = Envelope::request_bytes(Some(&id), &method, Some(&params));
        let env = Envelope::parse(&bytes).expect("round trip");
        prop_assert_eq!(env.kind, Kind::Request);
        prop_assert_eq!(env.id, Some(id));
        prop_assert_eq!(env.method.as_deref(), Some(method.as_str()));
        prop_assert_eq!(env.params.map(|p| p.get().to_owned()), Some(params.get().to_owned()));
    }
}

/// The earlier `RawObject::to_raw`: bytes written by hand, then parsed
/// back as raw JSON. The reference the serializer-based one must match.
fn to_raw_by_hand(obj: &RawObject) -> String {
    let mut out = Vec::new();
    out.push(b'{');
    for (i, (k, v)) in obj.0.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        crate::json::write_str(&mut out, k);
        out.push(b':');
        out.extend_from_slice(v.get().as_bytes());
    }
    out.push(b'}');
    let raw = RawValue::from_string(String::from_utf8_lossy(&out).into_owned())
        .unwrap_or_else(|_| empty_object());
    raw.get().to_owned()
}

fn json_text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        Just("-0.0e+7".to_owned()),
        Just("1.50".to_owned()),
        any::<String>().prop_map(|s| serde_json::to_string(&s).expect("string")),
        Just(r#""\u00e9\n\"""#.to_owned()),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4)
                .prop_map(|v| format!("[{}]", v.join(" , "))),
            proptest::collection::vec((any::<String>(), inner), 0..4).prop_map(|kv| {
                let body: Vec<String> = kv
                    .into_iter()
                    .map(|(k, v)| format!("{}: {v}", serde_json::to_string(&k).expect("key")))
                    .collect();
                format!("{{ {} }}", body.join(","))
            }),
        ]
    })
}

proptest! {
    /// Keys of any text and values of any raw JSON (whitespace, escapes and
    /// number spellings kept) come out exactly as the hand-written form did.
    #[test]
    fn to_raw_matches_the_hand_written_form(
        entries in proptest::collection::vec((any::<String>(), json_text()), 0..6)
    ) {
        let obj = RawObject(
            entries
                .into_iter()
                .map(|(k, v)| (k, RawValue::from_string(v).expect("valid raw JSON")))
                .collect(),
        );
        let raw = obj.to_raw();
        prop_assert_eq!(raw.get(), to_raw_by_hand(&obj));
    }

    /// `set_str` writes the same literal as `json::write_str`.
    #[test]
    fn set_str_writes_the_json_string_literal(value in any::<String>()) {
        let mut obj = RawObject::default();
        obj.set_str("name", &value);
        let mut expected = Vec::new();
        crate::json::write_str(&mut expected, &value);
        prop_assert_eq!(obj.get("name").map(RawValue::get), std::str::from_utf8(&expected).ok());
        prop_assert_eq!(obj.get_str("name"), Some(value));
    }
}

proptest! {
    /// A result written from its value is byte for byte the result wrapped
    /// as raw JSON by serde_json first, as the gateway did before.
    #[test]
    fn result_from_a_value_is_the_raw_result(id in any::<u64>(), text in json_text(), hint in 0usize..64) {
        let value: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        let id = RequestId::number(id);
        prop_assert_eq!(
            Envelope::result_value_bytes(&id, &value, hint),
            Envelope::result_bytes(&id, &to_raw(&value))
        );
    }
}
