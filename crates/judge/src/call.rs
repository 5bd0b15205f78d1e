//! What the judge is asked about: a [`Call`] before it goes out and a
//! [`ToolResult`] after the upstream answered.
//!
//! Owns: [`Call`], [`CallKind`] and [`ToolResult`]. Both are borrowed views,
//! so the gateway builds them from its parsed envelope without copying.

use serde_json::Value;

use crate::ids::{AgentId, SessionKey, UserId};

/// The MCP operation being judged (the Cedar action).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CallKind {
    /// `tools/call`.
    #[default]
    CallTool,
    /// `tools/list`.
    ListTools,
    /// `resources/read`.
    ReadResource,
    /// `prompts/get`.
    GetPrompt,
}

impl CallKind {
    /// The Cedar action id.
    pub fn as_str(self) -> &'static str {
        match self {
            CallKind::CallTool => "call_tool",
            CallKind::ListTools => "list_tools",
            CallKind::ReadResource => "read_resource",
            CallKind::GetPrompt => "get_prompt",
        }
    }
}

/// One call an agent wants to make.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// The authenticated agent.
    pub agent: &'a AgentId,
    /// The user the agent acts for, when known.
    pub user: Option<&'a UserId>,
    /// The agent's attributes (team, environment, owner...) as the operator
    /// declared them; the Cedar principal carries the declared keys.
    pub attributes: &'a [(String, String)],
    /// The behavioural session.
    pub session: &'a SessionKey,
    /// The operation.
    pub kind: CallKind,
    /// The upstream server, when known.
    pub server: Option<&'a str>,
    /// The tool (or resource URI, or prompt name).
    pub tool: &'a str,
    /// The arguments.
    pub args: &'a Value,
    /// The arguments' compact JSON text (`args.to_string()`), when the
    /// caller has written it already (for its audit digest, say); the judge
    /// writes it itself otherwise, if a rule reads it.
    pub args_text: Option<&'a str>,
    /// The user's own request, passed by a trusted client; values that
    /// appear in it count as trusted.
    pub intent: Option<&'a str>,
}

impl<'a> Call<'a> {
    /// A `tools/call` with no user, server or intent.
    pub fn tool(
        agent: &'a AgentId,
        session: &'a SessionKey,
        tool: &'a str,
        args: &'a Value,
    ) -> Call<'a> {
        Call {
            agent,
            user: None,
            attributes: &[],
            session,
            kind: CallKind::CallTool,
            server: None,
            tool,
            args,
            args_text: None,
            intent: None,
        }
    }

    /// Sets the upstream server.
    pub fn on(mut self, server: &'a str) -> Call<'a> {
        self.server = Some(server);
        self
    }

    /// Sets the user.
    pub fn for_user(mut self, user: &'a UserId) -> Call<'a> {
        self.user = Some(user);
        self
    }

    /// Sets the agent's attributes.
    pub fn with_attributes(mut self, attributes: &'a [(String, String)]) -> Call<'a> {
        self.attributes = attributes;
        self
    }

    /// Sets the trusted intent.
    pub fn with_intent(mut self, intent: &'a str) -> Call<'a> {
        self.intent = Some(intent);
        self
    }
}

/// A tool result as the upstream returned it: either plain text or an MCP
/// result object (`content`, `structuredContent`, ...). Every string in it
/// is inspected.
#[derive(Debug, Clone, Copy)]
pub struct ToolResult<'a> {
    /// The result value.
    pub value: &'a Value,
    /// The result is an error (`isError`).
    pub is_error: bool,
}
