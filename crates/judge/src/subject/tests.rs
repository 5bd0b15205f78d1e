use serde_json::{Value, json};

use super::{BindSource, Owner, ResultIds, SubjectState, judge, observe};
use crate::roles::CallRoles;
use crate::state::Provenance;

fn call(
    st: &mut SubjectState,
    args: &Value,
    user: Option<&str>,
    intent: Option<&str>,
    money: bool,
) -> super::SubjectFacts {
    let roles = CallRoles::resolve(&[], "shop", "t", args, !money);
    judge(
        st,
        &Provenance::default(),
        &roles,
        user,
        true,
        intent,
        money,
    )
}

fn result(st: &mut SubjectState, args: &Value, result: Value, at: u32) {
    let roles = CallRoles::resolve(&[], "shop", "t", args, true);
    if let Some(ids) = ResultIds::scan(&roles, &result) {
        observe(st, ids, false, at);
    }
}

#[test]
fn the_first_successful_lookup_binds_and_its_ids_are_owned() {
    let mut st = SubjectState::default();
    let lookup = json!({"email": "ann@example.com"});
    let f = call(&mut st, &lookup, None, None, false);
    assert_eq!(f.bound, None);
    // A failed lookup (a typo) binds nobody.
    let roles = CallRoles::resolve(&[], "shop", "t", &lookup, true);
    if let Some(ids) = ResultIds::scan(&roles, &json!("not found")) {
        observe(&mut st, ids, true, 0);
    }
    assert_eq!(st.bound_by(), None);
    result(
        &mut st,
        &lookup,
        json!({"user_id": "ann_1042", "orders": ["#W1001", "#W1002"]}),
        1,
    );
    assert_eq!(st.bound_by(), Some(BindSource::Lookup));
    // The user id behind the address is the same subject.
    let f = call(&mut st, &json!({"user_id": "ann_1042"}), None, None, false);
    assert_eq!(f.arg, Some(Owner::Own));
    let f = call(&mut st, &json!({"order_id": "#W1002"}), None, None, false);
    assert_eq!(f.object, Some(Owner::Own));
    assert!(!f.foreign());
}

#[test]
fn objects_seen_in_another_subjects_record_belong_to_them() {
    let mut st = SubjectState::default();
    let me = json!({"user_id": "ann_1042"});
    result(&mut st, &me, json!({"reservations": ["R-100"]}), 0);
    // A record whose subject field names someone else.
    let other = json!({"reservation_id": "R-900"});
    let f = call(&mut st, &other, None, None, false);
    assert_eq!(f.object, Some(Owner::Unknown));
    result(
        &mut st,
        &other,
        json!(r#"{"reservation_id": "R-900", "user_id": "bob_77", "flights": ["HX-1"]}"#),
        1,
    );
    let f = call(&mut st, &other, None, None, false);
    assert_eq!(f.object, Some(Owner::Other));
    assert!(f.other());
    let d = f.detail.unwrap_or_default();
    assert!(d.contains("R-900") && d.contains("ann_1042"), "{d}");
    assert_eq!(f.others, 1);
}

#[test]
fn the_end_user_or_the_intent_binds_before_any_lookup() {
    let mut st = SubjectState::default();
    let f = call(
        &mut st,
        &json!({"user_id": "bob_77"}),
        Some("ann_1042"),
        None,
        false,
    );
    assert_eq!(f.bound, Some(BindSource::User));
    assert_eq!(f.arg, Some(Owner::Other));
    let mut st = SubjectState::default();
    let f = call(
        &mut st,
        &json!({"user_id": "ann_1042"}),
        None,
        Some("hi, i am ann_1042 and want to change my flight"),
        false,
    );
    assert_eq!(f.bound, Some(BindSource::Intent));
    assert_eq!(f.arg, Some(Owner::Own));
}

#[test]
fn an_end_user_of_another_id_space_binds_only_once_a_subject_argument_names_it() {
    fn roles_for(args: &Value) -> CallRoles<'_> {
        CallRoles::resolve(&[], "shop", "t", args, true)
    }
    let prov = Provenance::default();
    let mut st = SubjectState::default();
    let args = json!({"user_id": "cus_311"});
    let f = judge(
        &mut st,
        &prov,
        &roles_for(&args),
        Some("lena"),
        false,
        None,
        false,
    );
    assert_eq!(f.bound, None, "`lena` is not an id the tools use");
    let args = json!({"user_id": "lena"});
    let f = judge(
        &mut st,
        &prov,
        &roles_for(&args),
        Some("lena"),
        false,
        None,
        false,
    );
    assert_eq!((f.bound, f.arg), (Some(BindSource::User), Some(Owner::Own)));
}

#[test]
fn a_run_of_other_subjects_is_counted() {
    let mut st = SubjectState::default();
    result(
        &mut st,
        &json!({"customer_id": "C-1"}),
        json!({"lines": ["L-1"]}),
        0,
    );
    for (i, c) in ["C-2", "C-3", "C-4"].into_iter().enumerate() {
        let args = json!({"customer_id": c});
        let f = call(&mut st, &args, None, None, false);
        assert_eq!(f.arg, Some(Owner::Other));
        assert_eq!(f.others, u32::try_from(i + 1).unwrap_or(0));
        result(&mut st, &args, json!({"lines": [format!("L-{c}")]}), 1);
    }
}

#[test]
fn money_destinations_are_classified() {
    let mut st = SubjectState::default();
    result(
        &mut st,
        &json!({"user_id": "ann_1042"}),
        json!({"payment_methods": {"credit_card_7781": {"brand": "visa"}}}),
        0,
    );
    let f = call(
        &mut st,
        &json!({"order_id": "x", "payment_method_id": "credit_card_7781"}),
        None,
        None,
        true,
    );
    assert_eq!(f.payee, Some(Owner::Own));
    let f = call(
        &mut st,
        &json!({"payment_method_id": "gift_card_5550"}),
        None,
        None,
        true,
    );
    assert_eq!(f.payee, Some(Owner::Unknown));
}

#[test]
fn state_stays_bounded() {
    let mut st = SubjectState::default();
    let me = json!({"user_id": "u-0"});
    for i in 0..200 {
        let ids: Vec<String> = (0..64).map(|j| format!("o-{i}-{j}")).collect();
        result(&mut st, &me, json!({ "ids": ids }), i);
        let other = json!({"user_id": format!("u-{}", i + 1)});
        result(&mut st, &other, json!({ "ids": [format!("x-{i}")] }), i);
    }
    assert!(st.owned.len() <= super::OWNED_CAP);
    assert!(st.others.len() <= super::OTHERS_CAP);
    assert!(st.other_subjects.len() <= super::OTHER_SUBJECTS_CAP);
    assert!(st.heap_bytes() < 2048, "{}", st.heap_bytes());
}

#[test]
fn an_object_whose_own_record_forbids_a_refund_is_barred() {
    let mut st = SubjectState::default();
    let me = json!({"user_id": "ann_1042"});
    call(&mut st, &me, Some("ann_1042"), None, false);
    result(&mut st, &me, json!({"reservations": ["R-100", "R-101"]}), 0);
    let saver = json!({"reservation_id": "R-100"});
    result(
        &mut st,
        &saver,
        json!(
            r#"{"reservation_id": "R-100", "user_id": "ann_1042", "rate": "Non-refundable saver"}"#
        ),
        1,
    );
    let flag = json!({"reservation_id": "R-101"});
    result(
        &mut st,
        &flag,
        json!({"reservation_id": "R-101", "user_id": "ann_1042", "rate": "flexible"}),
        2,
    );
    let f = call(&mut st, &saver, Some("ann_1042"), None, true);
    assert_eq!(f.object, Some(Owner::Barred));
    assert!(f.detail.unwrap_or_default().contains("non-refundable"));
    // A flexible rate is the subject's own and nothing more.
    let f = call(&mut st, &flag, Some("ann_1042"), None, true);
    assert_eq!(f.object, Some(Owner::Own));
    // A boolean field says it as well as words do.
    result(
        &mut st,
        &flag,
        json!({"reservation_id": "R-101", "user_id": "ann_1042", "is_refundable": false}),
        3,
    );
    let f = call(&mut st, &flag, Some("ann_1042"), None, true);
    assert_eq!(f.object, Some(Owner::Barred));
}

#[test]
fn value_granted_to_the_subject_must_rest_on_an_amount_its_records_showed() {
    let mut st = SubjectState::default();
    let me = json!({"user_id": "ann_1042"});
    call(&mut st, &me, Some("ann_1042"), None, false);
    result(
        &mut st,
        &me,
        json!({"user_id": "ann_1042", "orders": ["OR-1"]}),
        0,
    );
    let credit = json!({"user_id": "ann_1042", "amount": 900});
    let f = call(&mut st, &credit, Some("ann_1042"), None, true);
    // Nothing read shows an amount: a customer's word is no record.
    let asked = Some("i want 900 in credit, i have been loyal");
    assert_eq!(super::unquoted(&st, &f, 900.0, asked), Some(None));
    // An amount nobody named is not the customer's word.
    assert_eq!(super::unquoted(&st, &f, 900.0, None), None);
    let order = json!({"order_id": "OR-1"});
    result(
        &mut st,
        &order,
        json!({"order_id": "OR-1", "user_id": "ann_1042", "total_paid": "450.00 EUR", "payment_method": "card-4411"}),
        1,
    );
    let f = call(&mut st, &credit, Some("ann_1042"), None, true);
    assert_eq!(super::unquoted(&st, &f, 900.0, None), Some(Some(450.0)));
    assert_eq!(super::unquoted(&st, &f, 450.0, asked), None);
    assert_eq!(super::unquoted(&st, &f, 40.0, None), None);
    // Value to someone else is another rule's business.
    let f = call(
        &mut st,
        &json!({"user_id": "bob_77", "amount": 900}),
        Some("ann_1042"),
        None,
        true,
    );
    assert_eq!(super::unquoted(&st, &f, 900.0, asked), None);
}
