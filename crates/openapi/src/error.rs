//! The crate's errors: one enum for loading a spec into tools, one for
//! turning a call's arguments into a request.

/// Why a spec could not be turned into tools.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// The file could not be read.
    #[error("cannot read OpenAPI spec `{origin}`: {reason}")]
    Read {
        /// File name or URL.
        origin: String,
        /// Why.
        reason: String,
    },
    /// Neither JSON nor YAML.
    #[error("OpenAPI spec `{origin}` is neither JSON nor YAML: {reason}")]
    Syntax {
        /// File name or URL.
        origin: String,
        /// The parser's message.
        reason: String,
    },
    /// A Swagger 2.0 document: its parameters and bodies work differently.
    #[error(
        "`{origin}` is a Swagger 2.0 document; only OpenAPI 3.0 and 3.1 are supported (convert it, e.g. with `swagger2openapi`)"
    )]
    Swagger2 {
        /// File name or URL.
        origin: String,
    },
    /// Not an OpenAPI document, or a version this crate does not read.
    #[error("`{origin}` is not an OpenAPI 3.0/3.1 document: {reason}")]
    NotOpenApi {
        /// File name or URL.
        origin: String,
        /// What is missing or wrong.
        reason: String,
    },
    /// A `$ref` that points outside the document or at nothing.
    #[error(
        "OpenAPI spec `{origin}`: unresolvable `$ref` `{reference}` in operation `{operation}`"
    )]
    Ref {
        /// File name or URL.
        origin: String,
        /// The reference.
        reference: String,
        /// The operation it appears in.
        operation: String,
    },
    /// More operations selected than the configured cap.
    #[error(
        "OpenAPI spec `{origin}` selects {selected} operations, more than `max_tools: {max}`; narrow `include`/`exclude` or raise `max_tools`"
    )]
    TooMany {
        /// File name or URL.
        origin: String,
        /// Operations selected.
        selected: usize,
        /// The cap.
        max: usize,
    },
    /// Two operations would be exposed under the same tool name.
    #[error(
        "OpenAPI spec `{origin}`: operations `{first}` and `{second}` both become tool `{name}`"
    )]
    Collision {
        /// File name or URL.
        origin: String,
        /// The tool name.
        name: String,
        /// One operation (`METHOD /path`).
        first: String,
        /// The other.
        second: String,
    },
    /// Two parameters of one operation cannot be told apart in arguments.
    #[error(
        "OpenAPI spec `{origin}`: operation `{operation}` has parameter `{name}` twice in `{location}`"
    )]
    DuplicateParameter {
        /// File name or URL.
        origin: String,
        /// The operation.
        operation: String,
        /// Parameter name.
        name: String,
        /// Where (`path`, `query`, `header`).
        location: String,
    },
}

/// Why a call's arguments could not become an HTTP request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// A required argument is missing.
    #[error("missing required argument `{0}`")]
    Missing(String),
    /// An argument has a shape the parameter cannot carry.
    #[error("argument `{name}` {reason}")]
    Invalid {
        /// Argument name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// Arguments that are not an object.
    #[error("arguments must be a JSON object")]
    NotObject,
    /// An argument this operation does not take.
    #[error("unknown argument `{0}`")]
    Unknown(String),
}
