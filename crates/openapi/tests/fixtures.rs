//! Public specs: the Petstore example and Discord's HTTP API description
//! (242 operations), checked for names, schemas, the cap, and build time.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use castellan_openapi::naming::is_valid;
use castellan_openapi::{Api, Filter, Selection, Spec, SpecError};
use serde_json::json;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn discord() -> Spec {
    let out = std::process::Command::new("xz")
        .arg("-dc")
        .arg(fixture("discord-openapi.json.xz"))
        .output()
        .expect("xz runs");
    assert!(out.status.success(), "xz -dc failed");
    Spec::parse("discord-openapi.json", &out.stdout).expect("the Discord spec parses")
}

#[test]
fn the_petstore_example_becomes_three_tools() {
    let spec = Spec::load(&fixture("petstore.yaml")).expect("petstore parses");
    let api = Api::build(&spec, &Selection::default(), 64).expect("tools");
    let names: Vec<&str> = api.tools().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["listPets", "createPets", "showPetById"]);
    let show = api.tool("showPetById").expect("tool");
    assert_eq!(show.input_schema["required"], json!(["petId"]));
    let req = show.request(&json!({"petId": "7"})).expect("request");
    assert_eq!(
        (req.method.as_str(), req.path_and_query.as_str()),
        ("GET", "/pets/7")
    );
}

#[test]
fn a_spec_of_hundreds_of_operations_builds_quickly_with_valid_distinct_names() {
    let started = Instant::now();
    let spec = discord();
    let everything = Selection {
        max_tools: 1000,
        ..Selection::default()
    };
    // `discord__` takes 9 of the 64 characters.
    let api = Api::build(&spec, &everything, 55).expect("tools");
    let took = started.elapsed();
    assert_eq!(api.tools().len(), 242);
    let mut seen = std::collections::HashSet::new();
    for t in api.tools() {
        assert!(is_valid(&t.name) && t.name.len() <= 55, "{}", t.name);
        assert!(seen.insert(t.name.clone()), "duplicate {}", t.name);
        assert_eq!(t.input_schema["type"], "object");
    }
    let listed = serde_json::to_vec(&api.list()).expect("list");
    eprintln!(
        "discord: 242 tools in {} ms, tools/list {} bytes",
        took.as_millis(),
        listed.len()
    );
    // Debug builds included: start-up must not wait on the spec.
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[test]
fn the_default_cap_refuses_a_spec_that_would_flood_the_client() {
    let spec = discord();
    let err = Api::build(&spec, &Selection::default(), 64).expect_err("refused");
    assert!(
        matches!(
            err,
            SpecError::TooMany {
                selected: 242,
                max: 200,
                ..
            }
        ),
        "{err}"
    );
    // Narrowed by tag, it fits.
    let guilds = Selection {
        include: Filter {
            paths: vec!["/guilds/*".into()],
            methods: vec!["get".into()],
            ..Filter::default()
        },
        ..Selection::default()
    };
    let api = Api::build(&spec, &guilds, 64).expect("tools");
    assert!(!api.tools().is_empty() && api.tools().len() < 100);
    assert!(
        api.tools()
            .iter()
            .all(|t| t.method == "get" && t.path.starts_with("/guilds/"))
    );
}
