//! Agents in wasmi: the imports of the `agent` world (sensors, actuators, log, clock) and the
//! canonical ABI of its exports, done by hand for the few types the world uses.
//!
//! Every call runs with a fuel budget; memory growth is capped; the call stack depth is capped.
//! A trap, running out of fuel, or an export returning an error is an [`AgentError`] counted in
//! [`AgentStats`], never a panic. Each agent gets an engine of its own unless the caller shares a
//! compiled [`wasmi::Module`]: a long-lived engine keeps every module compiled on it, so a device
//! that swaps agents would leak.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// The wasmi types a host sharing compiled agents between devices needs.
pub use wasmi::{Engine, Module};

use wasmi::TrapCode;
use wasmi::{
    Caller, CompilationMode, Config, Instance, Linker, Memory, Store, StoreLimits,
    StoreLimitsBuilder, TypedFunc,
};

/// Imports of `hotswap:agent@0.1.0`, as the core module sees them.
const SENSORS: &str = "hotswap:agent/sensors@0.1.0";
const ACTUATORS: &str = "hotswap:agent/actuators@0.1.0";
const LOG: &str = "hotswap:agent/log@0.1.0";
const CLOCK: &str = "hotswap:agent/clock@0.1.0";
const IMPORTS: [(&str, &str); 4] = [
    (SENSORS, "read"),
    (ACTUATORS, "set"),
    (LOG, "log"),
    (CLOCK, "now-ms"),
];

/// How important a log line is, as `hotswap:agent/log.level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

/// What the device gives an agent.
pub trait AgentHost {
    /// The named sensor's latest value; NaN when there is no such sensor.
    fn read_sensor(&mut self, name: &str) -> f32;
    fn set_actuator(&mut self, name: &str, value: f32);
    fn log(&mut self, level: LogLevel, message: &str);
    /// Milliseconds since boot.
    fn now_ms(&mut self) -> u64;
}

/// Limits on an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentLimits {
    /// Fuel for one `init` or `step` call (about one unit per instruction).
    pub fuel_per_call: u64,
    /// Fuel for the self-test: the watchdog budget of a trial.
    pub self_test_fuel: u64,
    /// The most linear memory the agent may have.
    pub memory_bytes: usize,
    /// The deepest call stack.
    pub max_recursion_depth: usize,
    /// The longest log line kept, in bytes; longer lines are cut.
    pub log_line_bytes: usize,
}

impl Default for AgentLimits {
    fn default() -> Self {
        AgentLimits {
            fuel_per_call: 1_000_000,
            self_test_fuel: 10_000_000,
            memory_bytes: 256 * 1024,
            max_recursion_depth: 256,
            log_line_bytes: 256,
        }
    }
}

/// Why an agent could not be loaded or a call into it failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    #[error("agent is not a valid WebAssembly module: {0}")]
    Invalid(String),
    #[error("agent imports `{module}#{name}`, which devices do not provide")]
    UnknownImport { module: String, name: String },
    #[error("agent does not export `{0}` as the agent world asks")]
    MissingExport(&'static str),
    #[error("agent could not be instantiated: {0}")]
    Instantiate(String),
    #[error("agent ran out of fuel in `{0}`")]
    OutOfFuel(&'static str),
    #[error("agent trapped in `{function}`: {message}")]
    Trap {
        function: &'static str,
        message: String,
    },
    #[error("agent's `{function}` returned an error: {message}")]
    Failed {
        function: &'static str,
        message: String,
    },
    #[error("agent broke the canonical ABI in `{function}`: {message}")]
    Abi {
        function: &'static str,
        message: String,
    },
}

/// Counts of what went wrong while an agent ran: what a device reports as health.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AgentStats {
    pub steps: u64,
    pub step_errors: u64,
    pub traps: u32,
    pub fuel_exhausted: u32,
}

struct HostState<H> {
    host: H,
    limits: StoreLimits,
    memory: Option<Memory>,
    log_line_bytes: usize,
}

struct Exports {
    init: TypedFunc<(i32, i32), i32>,
    step: TypedFunc<(), i32>,
    self_test: TypedFunc<(), i32>,
    realloc: TypedFunc<(i32, i32, i32, i32), i32>,
    post_init: Option<TypedFunc<i32, ()>>,
    post_step: Option<TypedFunc<i32, ()>>,
    post_self_test: Option<TypedFunc<i32, ()>>,
    memory: Memory,
}

/// A running agent.
pub struct Agent<H> {
    store: Store<HostState<H>>,
    exports: Exports,
    limits: AgentLimits,
    stats: AgentStats,
}

/// An engine configured for agents.
pub fn engine(limits: &AgentLimits) -> Engine {
    let mut config = Config::default();
    config
        .consume_fuel(true)
        .compilation_mode(CompilationMode::LazyTranslation)
        .set_max_recursion_depth(limits.max_recursion_depth);
    Engine::new(&config)
}

/// Compiles an agent, checking that it imports only what devices provide.
pub fn compile(engine: &Engine, bytes: &[u8]) -> Result<Module, AgentError> {
    let module = Module::new(engine, bytes).map_err(|e| AgentError::Invalid(e.to_string()))?;
    for import in module.imports() {
        if !IMPORTS.contains(&(import.module(), import.name())) {
            return Err(AgentError::UnknownImport {
                module: import.module().to_string(),
                name: import.name().to_string(),
            });
        }
    }
    Ok(module)
}

fn read_str(memory: &[u8], ptr: i32, len: i32) -> Result<&str, wasmi::Error> {
    let (ptr, len) = (ptr as u32 as usize, len as u32 as usize);
    let bytes = memory.get(
        ptr..ptr
            .checked_add(len)
            .ok_or_else(|| wasmi::Error::new("string out of bounds"))?,
    );
    let bytes = bytes.ok_or_else(|| wasmi::Error::new("string out of bounds"))?;
    core::str::from_utf8(bytes).map_err(|_| wasmi::Error::new("string is not UTF-8"))
}

fn linker<H: AgentHost + 'static>(engine: &Engine) -> Linker<HostState<H>> {
    let mut linker = Linker::new(engine);
    fn memory<H>(caller: &mut Caller<'_, HostState<H>>) -> Result<Memory, wasmi::Error> {
        caller
            .data()
            .memory
            .ok_or_else(|| wasmi::Error::new("agent has no memory"))
    }
    linker
        .func_wrap(
            SENSORS,
            "read",
            |mut caller: Caller<'_, HostState<H>>,
             ptr: i32,
             len: i32|
             -> Result<f32, wasmi::Error> {
                let mem = memory(&mut caller)?;
                let (data, state) = mem.data_and_store_mut(&mut caller);
                Ok(state.host.read_sensor(read_str(data, ptr, len)?))
            },
        )
        .and_then(|l| {
            l.func_wrap(
                ACTUATORS,
                "set",
                |mut caller: Caller<'_, HostState<H>>,
                 ptr: i32,
                 len: i32,
                 value: f32|
                 -> Result<(), wasmi::Error> {
                    let mem = memory(&mut caller)?;
                    let (data, state) = mem.data_and_store_mut(&mut caller);
                    state.host.set_actuator(read_str(data, ptr, len)?, value);
                    Ok(())
                },
            )
        })
        .and_then(|l| {
            l.func_wrap(
                LOG,
                "log",
                |mut caller: Caller<'_, HostState<H>>,
                 level: i32,
                 ptr: i32,
                 len: i32|
                 -> Result<(), wasmi::Error> {
                    let level = match level {
                        0 => LogLevel::Debug,
                        1 => LogLevel::Info,
                        2 => LogLevel::Warn,
                        3 => LogLevel::Error,
                        _ => return Err(wasmi::Error::new("log level out of range")),
                    };
                    let mem = memory(&mut caller)?;
                    let (data, state) = mem.data_and_store_mut(&mut caller);
                    let mut message = read_str(data, ptr, len)?;
                    if message.len() > state.log_line_bytes {
                        let mut cut = state.log_line_bytes;
                        while !message.is_char_boundary(cut) {
                            cut -= 1;
                        }
                        message = &message[..cut];
                    }
                    state.host.log(level, message);
                    Ok(())
                },
            )
        })
        .and_then(|l| {
            l.func_wrap(
                CLOCK,
                "now-ms",
                |mut caller: Caller<'_, HostState<H>>| -> i64 {
                    caller.data_mut().host.now_ms() as i64
                },
            )
        })
        .expect("each import is defined once");
    linker
}

fn typed<P: wasmi::WasmParams, R: wasmi::WasmResults, H>(
    store: &Store<HostState<H>>,
    instance: &Instance,
    name: &'static str,
) -> Result<TypedFunc<P, R>, AgentError> {
    instance
        .get_typed_func::<P, R>(store, name)
        .map_err(|_| AgentError::MissingExport(name))
}

impl<H: AgentHost + 'static> Agent<H> {
    /// Compiles and instantiates an agent on an engine of its own.
    pub fn load(bytes: &[u8], host: H, limits: AgentLimits) -> Result<Self, AgentError> {
        let engine = engine(&limits);
        let module = compile(&engine, bytes)?;
        Self::instantiate(&module, host, limits)
    }

    /// Instantiates an agent from a module compiled by [`compile`] (shared by devices that run
    /// the same verified bytes).
    pub fn instantiate(module: &Module, host: H, limits: AgentLimits) -> Result<Self, AgentError> {
        let engine = module.engine();
        let state = HostState {
            host,
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes)
                .instances(1)
                .memories(1)
                .build(),
            memory: None,
            log_line_bytes: limits.log_line_bytes,
        };
        let mut store = Store::new(engine, state);
        store.limiter(|s| &mut s.limits);
        store
            .set_fuel(limits.fuel_per_call)
            .map_err(|e| AgentError::Instantiate(e.to_string()))?;
        let instance = linker::<H>(engine)
            .instantiate_and_start(&mut store, module)
            .map_err(|e| AgentError::Instantiate(e.to_string()))?;
        let memory = instance
            .get_memory(&store, "memory")
            .ok_or(AgentError::MissingExport("memory"))?;
        store.data_mut().memory = Some(memory);
        let post = |name| instance.get_typed_func::<i32, ()>(&store, name).ok();
        let exports = Exports {
            init: typed(&store, &instance, "init")?,
            step: typed(&store, &instance, "step")?,
            self_test: typed(&store, &instance, "self-test")?,
            realloc: typed(&store, &instance, "cabi_realloc")?,
            post_init: post("cabi_post_init"),
            post_step: post("cabi_post_step"),
            post_self_test: post("cabi_post_self-test"),
            memory,
        };
        Ok(Agent {
            store,
            exports,
            limits,
            stats: AgentStats::default(),
        })
    }

    /// Calls `init` with the device's agent configuration (JSON).
    pub fn init(&mut self, config: &str) -> Result<(), AgentError> {
        const F: &str = "init";
        self.refuel(self.limits.fuel_per_call);
        let len = i32::try_from(config.len()).map_err(|_| AgentError::Abi {
            function: F,
            message: "config too long".into(),
        })?;
        let ptr = self
            .exports
            .realloc
            .call(&mut self.store, (0, 0, 1, len))
            .map_err(|e| self.call_error(F, e))?;
        self.exports
            .memory
            .write(&mut self.store, ptr as u32 as usize, config.as_bytes())
            .map_err(|_| AgentError::Abi {
                function: F,
                message: format!("cabi_realloc returned {ptr}, out of bounds"),
            })?;
        let ret = self
            .exports
            .init
            .call(&mut self.store, (ptr, len))
            .map_err(|e| self.call_error(F, e))?;
        self.result(F, ret, self.exports.post_init)
    }

    /// Calls `step`; counts it and any failure in [`Agent::stats`].
    pub fn step(&mut self) -> Result<(), AgentError> {
        const F: &str = "step";
        self.stats.steps += 1;
        self.refuel(self.limits.fuel_per_call);
        let result = match self.exports.step.call(&mut self.store, ()) {
            Ok(ret) => self.result(F, ret, self.exports.post_step),
            Err(e) => Err(self.call_error(F, e)),
        };
        if result.is_err() {
            self.stats.step_errors += 1;
        }
        result
    }

    /// Calls `self-test` under the self-test fuel budget (the trial watchdog).
    pub fn self_test(&mut self) -> Result<(), AgentError> {
        const F: &str = "self-test";
        self.refuel(self.limits.self_test_fuel);
        let ret = self
            .exports
            .self_test
            .call(&mut self.store, ())
            .map_err(|e| self.call_error(F, e))?;
        self.result(F, ret, self.exports.post_self_test)
    }

    pub fn stats(&self) -> AgentStats {
        self.stats
    }

    pub fn host(&self) -> &H {
        &self.store.data().host
    }

    pub fn host_mut(&mut self) -> &mut H {
        &mut self.store.data_mut().host
    }

    /// Bytes of linear memory the agent has.
    pub fn memory_size(&self) -> usize {
        self.exports.memory.data(&self.store).len()
    }

    fn refuel(&mut self, fuel: u64) {
        // Fuel metering is on for every agent engine, so this cannot fail.
        let _ = self.store.set_fuel(fuel);
    }

    fn call_error(&mut self, function: &'static str, err: wasmi::Error) -> AgentError {
        if err.as_trap_code() == Some(TrapCode::OutOfFuel) {
            self.stats.fuel_exhausted += 1;
            AgentError::OutOfFuel(function)
        } else {
            self.stats.traps += 1;
            AgentError::Trap {
                function,
                message: err.to_string(),
            }
        }
    }

    /// Decodes a `result<_, string>` returned through `ret` and frees it with the post-return.
    fn result(
        &mut self,
        function: &'static str,
        ret: i32,
        post: Option<TypedFunc<i32, ()>>,
    ) -> Result<(), AgentError> {
        let abi = |message: &str| AgentError::Abi {
            function,
            message: message.to_string(),
        };
        let mut word = [0u8; 12];
        self.exports
            .memory
            .read(&self.store, ret as u32 as usize, &mut word)
            .map_err(|_| abi("return area out of bounds"))?;
        let outcome = match word[0] {
            0 => Ok(()),
            1 => {
                let ptr = i32::from_le_bytes([word[4], word[5], word[6], word[7]]);
                let len = i32::from_le_bytes([word[8], word[9], word[10], word[11]]);
                let data = self.exports.memory.data(&self.store);
                let message = read_str(data, ptr, len)
                    .map_err(|_| abi("error string out of bounds or not UTF-8"))?;
                Err(AgentError::Failed {
                    function,
                    message: message.to_string(),
                })
            }
            tag => return Err(abi(&format!("result tag {tag}, expected 0 or 1"))),
        };
        if let Some(post) = post {
            post.call(&mut self.store, ret)
                .map_err(|e| self.call_error(function, e))?;
        }
        outcome
    }
}

/// The trial of a new agent: instantiate it, `init` it with `config`, and run its `self-test`
/// under the watchdog budget. What a device hands to [`crate::Device::run_trial`].
pub fn trial<H: AgentHost + 'static>(
    image: &[u8],
    host: H,
    limits: AgentLimits,
    config: &str,
) -> Result<Agent<H>, AgentError> {
    let mut agent = Agent::load(image, host, limits)?;
    agent.init(config)?;
    agent.self_test()?;
    Ok(agent)
}

/// A host for tests and simulations: fixed sensor values, recorded actuators and log.
#[derive(Debug, Clone, Default)]
pub struct RecordingHost {
    pub sensors: Vec<(String, f32)>,
    pub actuators: Vec<(String, f32)>,
    pub log: Vec<(LogLevel, String)>,
    pub clock_ms: u64,
}

impl AgentHost for RecordingHost {
    fn read_sensor(&mut self, name: &str) -> f32 {
        self.sensors
            .iter()
            .find(|(n, _)| n == name)
            .map_or(f32::NAN, |s| s.1)
    }

    fn set_actuator(&mut self, name: &str, value: f32) {
        match self.actuators.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value,
            None => self.actuators.push((name.to_string(), value)),
        }
    }

    fn log(&mut self, level: LogLevel, message: &str) {
        if self.log.len() < 1000 {
            self.log.push((level, message.to_string()));
        }
    }

    fn now_ms(&mut self) -> u64 {
        self.clock_ms += 1;
        self.clock_ms
    }
}
