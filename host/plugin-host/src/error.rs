use hotswap_plan::PlanViolation;

/// Why a plugin was refused at upload or a call into it failed. Every message says what was
/// expected and what was found, so a plugin author can act on it.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error(
        "plugin is {size} bytes, the limit is {limit} bytes: raise `max-component-bytes` (for this plugin at upload, within the server's [plugin-ceilings], or in its [plugin-limits])"
    )]
    TooLarge { size: usize, limit: usize },
    #[error(
        "the component has {count} {what}, the limit is {limit}: raise `{key}` (for this plugin at upload, within the server's [plugin-ceilings], or in its [plugin-limits])"
    )]
    OverLimit {
        what: &'static str,
        count: u64,
        limit: u64,
        key: &'static str,
    },
    #[error(
        "`{key}` {asked} asked for this plugin: it must be at least 1 and at most {ceiling}, this server's [plugin-ceilings]"
    )]
    AboveCeiling {
        key: &'static str,
        asked: u64,
        ceiling: u64,
    },
    #[error(
        "expected a WebAssembly component, found bytes that are not WebAssembly (no `\\0asm` header)"
    )]
    NotWasm,
    #[error(
        "expected a WebAssembly component, found a core module: turn it into a component with \
         `wasm-tools component new` (or wit-component) against the `{world}` world"
    )]
    CoreModule { world: &'static str },
    #[error("the component is not valid WebAssembly: {0}")]
    Invalid(String),
    #[error("the component imports `{import}`, but plugins may import only {allowed}")]
    ForbiddenImport { import: String, allowed: String },
    #[error("the component does not implement the `{world}` world: {detail}")]
    WrongWorld { world: &'static str, detail: String },
    #[error(
        "plugin `{plugin}` ran out of fuel ({fuel} units) in `{function}`: raise `fuel-per-call` (for this plugin at upload, or in the server's [plugin-limits]) if it needs more"
    )]
    OutOfFuel {
        plugin: String,
        function: &'static str,
        fuel: u64,
    },
    #[error(
        "plugin `{plugin}` was stopped after its {deadline_ms} ms deadline in `{function}` (`deadline-ms` in the server's [plugin-limits])"
    )]
    Deadline {
        plugin: String,
        function: &'static str,
        deadline_ms: u64,
    },
    #[error(
        "plugin `{plugin}` tried to grow its memory to {requested} bytes in `{function}`, the limit is {limit} bytes (`memory-bytes` in the server's [plugin-limits])"
    )]
    MemoryLimit {
        plugin: String,
        function: &'static str,
        requested: usize,
        limit: usize,
    },
    #[error("plugin `{plugin}` trapped in `{function}`: {message}")]
    Trap {
        plugin: String,
        function: &'static str,
        message: String,
    },
    #[error("plugin `{plugin}` refused its input: {message}")]
    Rejected { plugin: String, message: String },
    #[error("plugin `{plugin}` returned an invalid plan: {violation}")]
    BadPlan {
        plugin: String,
        violation: PlanViolation,
    },
    #[error("plugin `{plugin}` returned an invalid description: {detail}")]
    BadDescription { plugin: String, detail: String },
    #[error("no plugin instance is free ({0}); try again")]
    Busy(String),
    #[error("plugin runtime: {0}")]
    Runtime(String),
}
