//! The cached list answer against a fresh one: every input that can
//! change what an agent is shown makes the next list fresh.
use super::*;
use std::path::{Path, PathBuf};

/// A stdio upstream whose `tools/list` is the file `tools.json` beside
/// it, read at each list; while a file `fail` exists it exits instead
/// of answering (and is restarted).
const UPSTREAM: &str = r#"
import json, os, sys
here = os.path.dirname(os.path.abspath(__file__))
for line in sys.stdin:
    msg = json.loads(line)
    mid, method = msg.get("id"), msg.get("method")
    if mid is None:
        continue
    if method == "initialize":
        result = {"protocolVersion": "2025-06-18", "capabilities": {"tools": {}}, "serverInfo": {"name": "t", "version": "1"}}
    elif method == "tools/list":
        if os.path.exists(os.path.join(here, "fail")):
            os._exit(1)
        with open(os.path.join(here, "tools.json")) as f:
            result = {"tools": json.load(f)}
    elif method == "tools/call":
        result = {"content": [{"type": "text", "text": "ok"}]}
    else:
        sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": mid, "error": {"code": -32601, "message": "no"}}) + "\n")
        sys.stdout.flush()
        continue
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": mid, "result": result}) + "\n")
    sys.stdout.flush()
"#;

/// A policy hiding `py/b` from interns.
const INTERNS_NO_B: &str = r#"@id("default-permit")
permit (principal, action, resource);

@id("interns-no-b")
forbid (principal, action in [Action::"list_tools", Action::"call_tool"], resource == Tool::"py/b")
when { principal has team && principal.team == "interns" };
"#;

/// A policy hiding `py/b` from everyone.
const NOBODY_B: &str = r#"@id("default-permit")
permit (principal, action, resource);

@id("nobody-b")
forbid (principal, action in [Action::"list_tools", Action::"call_tool"], resource == Tool::"py/b")
when { true };
"#;

struct Harness {
    gw: Arc<Gateway>,
    dir: PathBuf,
    ids: u64,
}

fn scratch() -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "castellan-list-cache-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn tool(name: &str, description: &str) -> Value {
    json!({"name": name, "description": description, "inputSchema": {"type": "object"}})
}

fn set_tools(dir: &Path, tools: &[Value]) {
    std::fs::write(
        dir.join("tools.json"),
        Value::from(tools.to_vec()).to_string(),
    )
    .expect("tools");
}

/// The configuration: the stdio upstream `py` and the builtin `mail`,
/// with `policy` as the Cedar policy when given.
fn config(dir: &Path, policy: Option<&str>) -> Config {
    let judge = match policy {
        Some(text) => {
            let file = dir.join(format!("policy-{}.cedar", text.len()));
            std::fs::write(&file, text).expect("policy");
            format!("judge:\n  policy: {}\n", file.display())
        }
        None => String::new(),
    };
    let yaml = format!(
        "auth:\n  api_keys:\n    - agent: bot\n      sha256: {}\n      attributes: {{team: interns}}\n{judge}integrity:\n  store: {}\n  first_sight: hold\nupstreams:\n  - name: py\n    stdio:\n      command: python3\n      args: [\"-u\", \"{}\"]\n      restart_initial: 20ms\n      restart_max: 100ms\n  - name: mail\n    builtin: mail\n",
        "0".repeat(64),
        dir.join("pins.db").display(),
        dir.join("upstream.py").display()
    );
    castellan_config::load("<test>", &yaml, &|_| None).expect("config")
}

/// A gateway in front of `tools`; with `hold`, tools seen for the first
/// time wait for an approval, else they are pinned.
async fn harness(tools: &[Value], policy: Option<&str>, hold: bool) -> Harness {
    let dir = scratch();
    std::fs::write(dir.join("upstream.py"), UPSTREAM).expect("upstream");
    set_tools(&dir, tools);
    let cfg = Arc::new(config(&dir, policy));
    let auth = Authenticator::new(
        &castellan_config::Auth {
            anonymous: true,
            ..Default::default()
        },
        None,
    )
    .await
    .expect("auth");
    let behaviour = Behaviour::new(&cfg.judge, None).expect("behaviour");
    let integrity = if hold {
        Integrity::open(&cfg.integrity).expect("integrity")
    } else {
        Integrity::ephemeral().expect("integrity")
    };
    let gw = Gateway::start(cfg, auth, behaviour, integrity).expect("gateway");
    Harness { gw, dir, ids: 0 }
}

fn principal(agent: &str, team: &str) -> Principal {
    Principal {
        agent: agent.into(),
        user: None,
        attributes: Arc::new([("team".to_owned(), team.to_owned())]),
        method: "api_key",
        trusted_intent: false,
    }
}

fn modern(agent: &str, team: &str) -> Caller {
    Caller::Modern(Arc::new(ModernCaller {
        profile: ClientProfile::gateway(),
        principal: principal(agent, team),
        session: None,
        param_headers: Vec::new(),
    }))
}

fn legacy(h: &Harness, agent: &str, team: &str) -> Caller {
    let init = Envelope::parse(
        br#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#,
    )
    .expect("initialize");
    let (session, _) =
        h.gw.initialize(&init, principal(agent, team))
            .expect("session");
    Caller::Legacy(session)
}

impl Harness {
    /// The whole `tools/list` answer for `caller`.
    async fn list(&mut self, caller: &Caller) -> Value {
        self.ids += 1;
        let msg = json!({"jsonrpc": "2.0", "id": self.ids, "method": "tools/list", "params": {}});
        let env = Envelope::parse(msg.to_string().as_bytes()).expect("request");
        match self.gw.handle(caller.clone(), env, false).await {
            Outcome::Json(200, bytes) => serde_json::from_slice(&bytes).expect("answer"),
            other => panic!("unexpected answer {other:?}"),
        }
    }

    /// The tool names `caller` is shown, checked against the answer a
    /// second list gives (the cached one).
    async fn names(&mut self, caller: &Caller) -> Vec<String> {
        let first = self.list(caller).await;
        let again = self.list(caller).await;
        assert_eq!(first["result"], again["result"], "a reused answer differs");
        first["result"]["tools"]
            .as_array()
            .expect("tools")
            .iter()
            .filter_map(|t| t["name"].as_str().map(str::to_owned))
            .collect()
    }

    /// The answer to calling `tool` (as the agent names it).
    async fn call(&mut self, caller: &Caller, tool: &str) -> Value {
        self.ids += 1;
        let msg = json!({"jsonrpc": "2.0", "id": self.ids, "method": "tools/call", "params": {"name": tool, "arguments": {}}});
        let env = Envelope::parse(msg.to_string().as_bytes()).expect("request");
        match self.gw.handle(caller.clone(), env, false).await {
            Outcome::Json(_, bytes) => serde_json::from_slice(&bytes).expect("answer"),
            other => panic!("unexpected answer {other:?}"),
        }
    }

    fn stored(&self) -> u64 {
        self.gw.list_cache.stored()
    }
}

fn has(names: &[String], name: &str) -> bool {
    names.iter().any(|n| n == name)
}

#[tokio::test]
async fn an_unchanged_list_is_reused_and_a_changed_one_is_answered_at_once() {
    let mut h = harness(&[tool("a", "A.")], None, false).await;
    let agent = modern("agent", "qa");
    let names = h.names(&agent).await;
    assert!(
        has(&names, "py__a") && has(&names, "mail__send_email"),
        "{names:?}"
    );
    // Nothing changed: no new answer is built.
    let stored = h.stored();
    let _ = h.names(&agent).await;
    assert_eq!(h.stored(), stored);

    set_tools(&h.dir, &[tool("a", "A."), tool("b", "B.")]);
    let names = h.names(&agent).await;
    assert!(has(&names, "py__b"), "{names:?}");
    set_tools(&h.dir, &[tool("b", "B.")]);
    let names = h.names(&agent).await;
    assert!(!has(&names, "py__a") && has(&names, "py__b"), "{names:?}");
}

#[tokio::test]
async fn an_approved_or_newly_withheld_tool_changes_the_list_though_its_upstream_does_not() {
    let mut h = harness(&[tool("a", "A.")], None, true).await;
    let agent = modern("agent", "qa");
    // Seen for the first time: withheld until approved.
    let names = h.names(&agent).await;
    assert!(!has(&names, "py__a"), "{names:?}");
    h.gw.integrity
        .approve("py", "a", None, "test")
        .expect("approve");
    let names = h.names(&agent).await;
    assert!(has(&names, "py__a"), "{names:?}");
    // Revoked by another process (`castellan tools revoke`).
    let other = castellan_integrity::Store::open(h.dir.join("pins.db")).expect("store");
    assert!(other.revoke("py", "a").expect("revoke"));
    let names = h.names(&agent).await;
    assert!(!has(&names, "py__a"), "{names:?}");
}

#[tokio::test]
async fn a_reused_answer_leaves_the_tools_callable_as_a_fresh_list_would() {
    let mut h = harness(&[tool("a", "A.")], None, false).await;
    let (one, two) = (modern("one", "qa"), modern("two", "qa"));
    assert!(has(&h.names(&one).await, "py__a"));
    // Another agent lists meanwhile, when the upstream lists nothing
    // (nothing new for the judge to learn): that screening is what the
    // gateway now knows of the upstream's tools.
    set_tools(&h.dir, &[]);
    assert!(!has(&h.names(&two).await, "py__a"));
    set_tools(&h.dir, &[tool("a", "A.")]);
    assert!(has(&h.names(&one).await, "py__a"));
    let answer = h.call(&one, "py__a").await;
    assert_eq!(answer["result"]["content"][0]["text"], "ok", "{answer}");
}

#[tokio::test]
async fn a_policy_reload_that_hides_a_tool_hides_it_from_the_next_list() {
    let mut h = harness(&[tool("a", "A."), tool("b", "B.")], None, false).await;
    let agent = modern("agent", "qa");
    assert!(has(&h.names(&agent).await, "py__b"));
    let next = config(&h.dir, Some(NOBODY_B));
    h.gw.reload_judge(&next.judge).expect("reload");
    let names = h.names(&agent).await;
    assert!(!has(&names, "py__b") && has(&names, "py__a"), "{names:?}");
}

#[tokio::test]
async fn each_principal_is_shown_its_own_view() {
    let mut h = harness(
        &[tool("a", "A."), tool("b", "B.")],
        Some(INTERNS_NO_B),
        false,
    )
    .await;
    let intern = modern("bot", "interns");
    let support = modern("bot", "support");
    let other_intern = modern("other-bot", "interns");
    for _ in 0..2 {
        assert!(!has(&h.names(&intern).await, "py__b"));
        assert!(has(&h.names(&support).await, "py__b"));
        assert!(!has(&h.names(&other_intern).await, "py__b"));
    }
}

#[tokio::test]
async fn modern_and_legacy_callers_get_answers_of_their_era() {
    let mut h = harness(&[tool("a", "A.")], None, false).await;
    let old = legacy(&h, "agent", "qa");
    let new = modern("agent", "qa");
    for _ in 0..2 {
        let l = h.list(&old).await;
        assert!(l["result"].get("resultType").is_none(), "{l}");
        assert!(l["result"].get("ttlMs").is_none(), "{l}");
        let m = h.list(&new).await;
        assert_eq!(m["result"]["resultType"], "complete", "{m}");
        assert_eq!(m["result"]["cacheScope"], "private", "{m}");
        assert_eq!(l["result"]["tools"], m["result"]["tools"]);
    }
}

#[tokio::test]
async fn an_upstream_that_failed_is_listed_again_once_it_recovers() {
    let mut h = harness(&[tool("a", "A.")], None, false).await;
    let agent = modern("agent", "qa");
    assert!(has(&h.names(&agent).await, "py__a"));
    std::fs::write(h.dir.join("fail"), "").expect("fail");
    let names = h.list(&agent).await["result"]["tools"].to_string();
    assert!(
        !names.contains("py__a") && names.contains("mail__"),
        "{names}"
    );
    std::fs::remove_file(h.dir.join("fail")).expect("recover");
    // The child is restarted after a short pause; until then it fails.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let list = h.list(&agent).await;
        if list["result"]["tools"].to_string().contains("py__a") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still left out: {list}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
